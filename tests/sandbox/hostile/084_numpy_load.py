# expect: compile forbidden attribute
# entry: on_board
# why: np.load reads (and unpickles) files
import numpy as np

def on_board(window, params, state):
    return np.load('/etc/passwd', allow_pickle=True)
