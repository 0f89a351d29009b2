# expect: runtime disallowed return type
# entry: on_board
# why: a numpy flags object
def on_board(window, params, state):
    return [window['SPEED'].v.flags]
