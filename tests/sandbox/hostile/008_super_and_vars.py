# expect: compile forbidden name
# entry: on_board
# why: vars() hands out an object's namespace
def on_board(window, params, state):
    return vars(window['SPEED'])
