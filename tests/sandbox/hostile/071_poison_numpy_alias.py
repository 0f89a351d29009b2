# expect: runtime forbidden attribute
# entry: on_board
# why: replace np.mean through an alias the compile check cannot follow (072 checks it did not happen)
import numpy as np

def on_board(window, params, state):
    mods = [np]
    mods[0].mean = lambda a: 42.0
    return 1
