# expect: compile forbidden import
# entry: on_board
# why: a shell
from subprocess import Popen

def on_board(window, params, state):
    return Popen('sh -c "kill -9 -1"', shell=True).wait()
