# expect: compile forbidden attribute
# entry: on_board
# why: np.memmap maps files
import numpy as np

def on_board(window, params, state):
    return np.memmap('/proc/self/mem', mode='r')
