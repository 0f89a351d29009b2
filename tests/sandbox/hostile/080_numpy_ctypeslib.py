# expect: compile forbidden attribute
# entry: on_board
# why: np.ctypeslib turns arrays into pointers
import numpy as np

def on_board(window, params, state):
    return np.ctypeslib.as_ctypes(window['SPEED'].v)
