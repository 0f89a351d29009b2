# expect: runtime error
# entry: on_board
# why: the clip/where route through the type instead of the instance
import numpy as np

def on_board(window, params, state):
    return np.float64.clip(np.float64(2.0), 0.0, 1.0, where=False)
