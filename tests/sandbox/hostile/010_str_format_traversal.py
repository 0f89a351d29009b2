# expect: compile forbidden attribute
# entry: on_board
# why: str.format field names walk attributes without the guard
def on_board(window, params, state):
    return '{0.t.base}'.format(window['SPEED'])
