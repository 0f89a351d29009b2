# expect: compile forbidden name
# entry: on_board
# why: exec
def on_board(window, params, state):
    exec('x = 1')
    return 1
