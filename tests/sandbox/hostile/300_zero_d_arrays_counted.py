# expect: runtime result too large
# entry: on_board
# why: 360,000 zero-dimensional arrays: 12 MB by bytes, but 5 CBOR headers each (1.8 million items); the check once counted 1 each, the server 5
import numpy as np

def on_board(window, params, state):
    return [np.zeros((), np.uint8)] * 360000
