# expect: compile forbidden name
# entry: on_board
# why: exit() ends the interpreter
def on_board(window, params, state):
    exit(0)
