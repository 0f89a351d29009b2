# expect: compile forbidden name
# why: exec
def on_board(window, params, state):
    exec('x = 1')
    return 1
