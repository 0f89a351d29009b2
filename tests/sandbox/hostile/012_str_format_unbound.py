# expect: compile forbidden attribute
# entry: on_board
# why: str.format reached through the type, not an instance
def on_board(window, params, state):
    return str.format('{0.__class__}', window)
