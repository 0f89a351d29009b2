# expect: compile forbidden name
# entry: on_board
# why: breakpoint() starts a debugger on the worker's stdin
def on_board(window, params, state):
    breakpoint()
    return 1
