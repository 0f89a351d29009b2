# expect: compile forbidden import
# entry: on_board
# why: plain import
import os

def on_board(window, params, state):
    return os.getcwd()
