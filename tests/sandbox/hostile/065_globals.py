# expect: compile forbidden name
# entry: on_board
# why: globals() hands out the namespace with the guards in it
def on_board(window, params, state):
    return globals()['_getattr_']
