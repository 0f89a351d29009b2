# expect: runtime disallowed return type
# entry: on_board
# deploy: refused disallowed return type
# why: hand back the window's own object
def on_board(window, params, state):
    return window['SPEED']
