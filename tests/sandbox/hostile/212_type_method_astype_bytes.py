# expect: runtime error
# entry: on_board
# why: a method fetched from the type, not the instance, makes a bytes scalar out of a float's memory
import numpy as np

def on_board(window, params, state):
    return np.float64.astype(np.float64(1.5), 'S8')
