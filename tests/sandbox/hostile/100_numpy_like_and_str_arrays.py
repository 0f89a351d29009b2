# expect: runtime error
# entry: on_board
# why: string arrays are refused like object arrays
import numpy as np

def on_board(window, params, state):
    return np.asarray(['/etc/passwd'])
