# expect: runtime result too large
# entry: off_board
# why: the server's own worker: the same rule for an off-board result of 0-d arrays (on_board too, for the corpus runs that call it)
import numpy as np

def off_board(results, params, state):
    return [np.zeros((), np.int64)] * 360000

def on_board(window, params, state):
    return off_board({}, params, state)
