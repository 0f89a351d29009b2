# expect: runtime forbidden attribute
# why: poison a shared module for later calls and other modules
import math

def on_board(window, params, state):
    math.sqrt = lambda x: 0
    return 1
