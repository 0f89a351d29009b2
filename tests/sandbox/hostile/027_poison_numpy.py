# expect: runtime forbidden attribute
# why: poison the numpy facade
import numpy as np

def on_board(window, params, state):
    np.mean = lambda x: 42
    return 1
