# expect: compile forbidden attribute
# entry: on_board
# why: a module's __loader__ loads other modules
import math

def on_board(window, params, state):
    return math.__loader__.load_module('os')
