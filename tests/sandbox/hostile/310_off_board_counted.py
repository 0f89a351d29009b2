# expect: runtime result too large
# entry: off_board
# why: the server's own worker: the same rule for an off-board result of 0-d arrays
import numpy as np

def off_board(results, params, state):
    return [np.zeros((), np.int64)] * 360000
