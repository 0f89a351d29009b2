# expect: runtime result too large
# entry: on_board
# why: the same rows spread over dimensions: (1000, 1000, 1000, 0) builds 10**9 lists too
import numpy as np

def on_board(window, params, state):
    return np.zeros((1000, 1000, 1000, 0))
