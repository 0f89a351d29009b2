# expect: compile forbidden name
# entry: on_board
# why: an import inside a string handed to exec
def on_board(window, params, state):
    exec('import os')
    return 1
