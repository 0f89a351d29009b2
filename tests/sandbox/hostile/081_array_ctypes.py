# expect: compile forbidden attribute
# entry: on_board
# why: ndarray.ctypes reaches raw memory
def on_board(window, params, state):
    return window['SPEED'].v.ctypes.data
