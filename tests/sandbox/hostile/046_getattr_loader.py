# expect: compile forbidden name
# entry: on_board
# why: getattr with a computed dunder name
import math

def on_board(window, params, state):
    return getattr(math, '__lo' + 'ader__')
