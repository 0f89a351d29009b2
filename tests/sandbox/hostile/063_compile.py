# expect: compile forbidden name
# entry: on_board
# why: compile makes unrestricted code
def on_board(window, params, state):
    return compile('1', 'x', 'eval')
