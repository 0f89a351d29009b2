# expect: runtime result too large
# entry: on_board
# why: a 9-dimensional array: the pipe and every peer decode at most 8 dimensions (it once broke the protocol and killed the worker)
import numpy as np

def on_board(window, params, state):
    return {'a': np.zeros((1, 1, 1, 1, 1, 1, 1, 1, 1))}
