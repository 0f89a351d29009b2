# expect: compile forbidden name
# why: compile
def on_board(window, params, state):
    return compile('1', 'x', 'eval')
