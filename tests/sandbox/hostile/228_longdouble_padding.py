# expect: runtime error
# entry: on_board
# why: long double keeps 10 bytes of value in 16; numpy never writes the other 6, so its bytes carry freed heap memory
import numpy as np

def on_board(window, params, state):
    return np.ones(50).astype('g').view(np.uint8)
