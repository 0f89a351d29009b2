# expect: runtime error
# entry: on_board
# why: an array method reaches the ufunc with where= and no out: every skipped element is freed heap memory
import numpy as np

def on_board(window, params, state):
    return np.ones(100).clip(0.0, 1.0, where=np.zeros(100) > 1)
