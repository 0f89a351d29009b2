# expect: runtime error
# entry: on_board
# deploy: refused error
# why: out= by position: a facade function only returns new arrays
import numpy as np

def on_board(window, params, state):
    v = window['SPEED'].v
    return np.sqrt(v, v)
