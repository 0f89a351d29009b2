# expect: ok
# entry: on_board
# why: what the counting rule lets through: 8 dimensions, an empty matrix, small 0-d arrays, a few thousand keys
import numpy as np

def on_board(window, params, state):
    return {'eight': np.zeros((1, 2, 1, 2, 1, 2, 1, 2)), 'empty': np.zeros((3, 0)),
            'scalars': [np.zeros((), np.uint8)] * 1000, 'keys': {str(i): i for i in range(5000)}}
