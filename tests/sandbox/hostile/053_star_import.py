# expect: compile forbidden import
# entry: on_board
# why: a star import could bind guard names
from math import *

def on_board(window, params, state):
    return sqrt(4)
