# expect: compile forbidden import
# entry: on_board
# why: a relative import reaches the worker's own package
from . import policy

def on_board(window, params, state):
    return 1
