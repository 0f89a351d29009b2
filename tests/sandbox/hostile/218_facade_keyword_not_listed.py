# expect: runtime error
# entry: on_board
# deploy: refused error
# why: where= on a non-reduction facade function (np.clip), which would leave skipped elements uninitialised
import numpy as np

def on_board(window, params, state):
    v = window['SPEED'].v
    return np.clip(v, 0.0, 1.0, where=v > 1e9)
