# expect: compile forbidden name
# entry: on_board
# why: replace print itself
print = lambda *args: None

def on_board(window, params, state):
    return 1
