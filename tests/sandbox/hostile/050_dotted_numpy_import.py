# expect: compile forbidden import
# entry: on_board
# why: numpy's submodules are not the facade
import numpy.ctypeslib

def on_board(window, params, state):
    return 1
