# expect: compile forbidden import
# why: numpy's submodules are not the facade
import numpy.ctypeslib

def on_board(window, params, state):
    return 1
