# expect: runtime result too large
# entry: on_board
# why: 200,000 empty 2-d arrays: no bytes of data, seven CBOR headers each
import numpy as np

def on_board(window, params, state):
    return [np.zeros((0, 5))] * 200000
