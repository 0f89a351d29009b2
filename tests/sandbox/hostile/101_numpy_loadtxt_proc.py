# expect: compile forbidden attribute
# entry: on_board
# why: np.loadtxt reads files such as /proc/self/environ
import numpy as np

def on_board(window, params, state):
    return np.loadtxt('/proc/self/environ', dtype=str)
