# expect: compile forbidden attribute
# entry: on_board
# why: an f-string is guarded like any expression
def on_board(window, params, state):
    return f"{window.__class__}"
