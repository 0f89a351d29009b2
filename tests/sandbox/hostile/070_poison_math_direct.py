# expect: compile forbidden attribute
# entry: on_board
# why: replace math.sqrt for later calls and other modules
import math

def on_board(window, params, state):
    math.sqrt = lambda x: 0.0
    return 1
