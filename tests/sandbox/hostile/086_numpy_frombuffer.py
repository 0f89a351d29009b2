# expect: compile forbidden attribute
# entry: on_board
# why: np.frombuffer wraps foreign memory
import numpy as np

def on_board(window, params, state):
    return np.frombuffer(b'12345678')
