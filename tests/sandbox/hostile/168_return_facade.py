# expect: runtime disallowed return type
# entry: on_board
# deploy: refused disallowed return type
# why: hand back the numpy facade
import numpy as np

def on_board(window, params, state):
    return {'np': np}
