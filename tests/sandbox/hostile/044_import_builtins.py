# expect: compile forbidden import
# entry: on_board
# why: the builtins module holds open, eval and __import__
import builtins

def on_board(window, params, state):
    return 1
