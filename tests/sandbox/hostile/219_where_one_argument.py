# expect: runtime error
# entry: on_board
# deploy: refused error
# why: np.where with one argument is np.nonzero under another name: the sandbox offers only the three-argument form
import numpy as np

def on_board(window, params, state):
    return np.where(window['SPEED'].v > 0)
