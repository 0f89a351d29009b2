# expect: runtime forbidden attribute
# entry: on_board
# why: np.load through an alias the compile check cannot follow
import numpy as np

def on_board(window, params, state):
    mods = {'n': np}
    return mods['n'].load('/etc/passwd')
