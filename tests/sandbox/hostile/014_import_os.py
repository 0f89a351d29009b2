# expect: compile forbidden import
# why: plain import
import os

def on_board(window, params, state):
    return os.getcwd()
