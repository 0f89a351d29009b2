# expect: compile forbidden import
# entry: on_board
# why: gc.get_objects hands out every object of the worker
import gc

def on_board(window, params, state):
    return len(gc.get_objects())
