# expect: runtime disallowed return type
# entry: on_board
# why: hand back the window's own object
def on_board(window, params, state):
    return window['SPEED']
