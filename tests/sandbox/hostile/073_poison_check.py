# expect: ok
# entry: on_board
# why: runs after 070-072 in the same worker: math, numpy and their functions are untouched
import math
import numpy as np

def on_board(window, params, state):
    if math.sqrt(4.0) != 2.0 or float(np.mean([1.0, 2.0, 3.0])) != 2.0:
        raise RuntimeError('poisoned')
    return 'clean'
