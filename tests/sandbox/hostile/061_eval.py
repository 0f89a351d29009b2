# expect: compile forbidden name
# entry: on_board
# why: eval
def on_board(window, params, state):
    return eval('1 + 1')
