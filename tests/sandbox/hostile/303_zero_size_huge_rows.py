# expect: runtime result too large
# entry: on_board
# why: np.zeros((10**9, 0)) is 16 bytes on the wire and 10**9 lists in every reader's tolist()
import numpy as np

def on_board(window, params, state):
    return {'empty': np.zeros((10 ** 9, 0))}
