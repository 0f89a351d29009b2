# expect: runtime disallowed return type
# entry: on_board
# deploy: refused disallowed return type
# why: a class object reaches the class hierarchy
import numpy as np

def on_board(window, params, state):
    return [np.float64]
