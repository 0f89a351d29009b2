# expect: runtime forbidden attribute
# why: np.memmap maps files
import numpy as np

def on_board(window, params, state):
    return np.memmap('/etc/passwd')
