# expect: runtime error
# entry: on_board
# why: a long double array made by a facade function (dtype=) or reached through a view of the module's own bytes
import numpy as np

def on_board(window, params, state):
    raw = np.zeros(32, dtype=np.uint8)
    return [np.ones(4, dtype='float128').tobytes(), raw.view('g')]
