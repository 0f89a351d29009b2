# expect: runtime memory
# entry: on_board
# why: an 800 GB array
import numpy as np

def on_board(window, params, state):
    return float(np.ones(10 ** 11).sum())
