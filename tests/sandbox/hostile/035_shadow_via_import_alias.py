# expect: compile forbidden name
# entry: on_board
# why: bind a guard name by importing under it
import math as _getiter_

def on_board(window, params, state):
    return 1
