# expect: runtime error
# entry: on_board
# why: the window is read-only: numpy refuses the write
def on_board(window, params, state):
    v = window['SPEED'].v
    v[0] = 1e9
    return 1
