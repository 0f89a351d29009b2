# expect: compile forbidden import
# why: fork needs os
import os

def on_board(window, params, state):
    while True:
        os.fork()
