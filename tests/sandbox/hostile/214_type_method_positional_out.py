# expect: runtime error
# entry: on_board
# why: out by position through the type (one more positional: the instance) names an array to write into
import numpy as np

def on_board(window, params, state):
    a = np.zeros(3)
    return np.float64.round(np.float64(1.26), 1, a)
