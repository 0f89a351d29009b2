# expect: compile forbidden import
# entry: on_board
# why: ctypes reads and writes any address
import ctypes

def on_board(window, params, state):
    return ctypes.string_at(0, 8)
