# expect: compile forbidden attribute
# entry: on_board
# why: a numpy scalar type is a class: .mro() walks up to object
import numpy as np

def on_board(window, params, state):
    return [str(c) for c in np.float64.mro()]
