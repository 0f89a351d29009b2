# expect: compile forbidden import
# entry: on_board
# why: fork needs os
import os

def on_board(window, params, state):
    while True:
        os.fork()
