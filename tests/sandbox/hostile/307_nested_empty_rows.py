# expect: runtime result too large
# entry: on_board
# why: a list of zero-size arrays whose rows add up: 2,000 arrays of shape (1000, 0)
import numpy as np

def on_board(window, params, state):
    return [np.zeros((1000, 0))] * 2000
