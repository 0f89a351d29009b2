# expect: compile forbidden attribute
# entry: on_board
# why: find sys.modules through a module that imported sys
import numpy as np

def on_board(window, params, state):
    return np.sys.modules['os'].environ
