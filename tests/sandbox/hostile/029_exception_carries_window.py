# expect: runtime error
# entry: on_board
# why: an exception that leaves the module reaches the caller as text only: no object, frame or traceback
def on_board(window, params, state):
    raise ValueError(window, window['SPEED'].v)
