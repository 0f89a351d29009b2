# expect: compile forbidden attribute
# entry: on_board
# why: ndarray.data is a memoryview of the buffer
def on_board(window, params, state):
    return bytes(window['SPEED'].v.data)
