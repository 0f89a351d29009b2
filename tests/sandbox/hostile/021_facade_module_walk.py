# expect: runtime forbidden attribute
# why: ask the numpy facade for what it does not offer
import numpy as np

def on_board(window, params, state):
    return np.ctypeslib.as_ctypes(window['SPEED'].v)
