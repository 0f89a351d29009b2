# expect: runtime forbidden attribute
# entry: on_board
# why: hang state on a shared facade function (072 checks it did not happen)
import numpy as np

def on_board(window, params, state):
    np.mean.poisoned = True
    return 1
