# expect: runtime error
# entry: on_board
# deploy: refused error
# why: a ufunc with where= and no out leaves uninitialised heap memory in its result
import numpy as np

def on_board(window, params, state):
    v = window['SPEED'].v
    return np.sqrt(v, where=v > 1e9)
