# expect: runtime error
# why: the window is read-only
def on_board(window, params, state):
    v = window['SPEED'].v
    v[0] = 1e9
    return 1
