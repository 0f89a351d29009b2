# expect: compile forbidden attribute
# entry: on_board
# why: as_strided reads past the end of an array
import numpy as np

def on_board(window, params, state):
    v = window['SPEED'].v
    return np.lib.stride_tricks.as_strided(v, shape=(10 ** 6,), strides=(8,))
