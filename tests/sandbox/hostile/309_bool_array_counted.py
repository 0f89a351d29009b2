# expect: runtime result too large
# entry: on_board
# why: boolean 0-d arrays travel as uint8-clamped typed arrays in the pipe and uint8 on the wire: the same count either way
import numpy as np

def on_board(window, params, state):
    return [np.zeros((), np.bool_)] * 250000
