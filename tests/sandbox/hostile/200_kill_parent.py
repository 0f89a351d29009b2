# expect: compile forbidden import
# entry: on_board
# why: kill the agent
import os, signal

def on_board(window, params, state):
    os.kill(os.getppid(), signal.SIGKILL)
