# expect: runtime result too large
# entry: on_board
# why: a 24 MB array
import numpy as np

def on_board(window, params, state):
    return np.zeros(3 * 10 ** 6)
