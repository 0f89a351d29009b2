# expect: compile forbidden name
# why: eval
def on_board(window, params, state):
    return eval('1 + 1')
