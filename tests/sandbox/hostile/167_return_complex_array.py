# expect: runtime disallowed return type
# entry: on_board
# why: complex arrays are not numeric results here
import numpy as np

def on_board(window, params, state):
    return np.sqrt(np.array([-1 + 0j]))
