# expect: runtime result too large
# entry: on_board
# why: 400,000 keys each holding a one-element array: key, tag and bytes each (1.2 million items), 8 MB
import numpy as np

def on_board(window, params, state):
    one = np.ones(1)
    return {str(i): one for i in range(400000)}
