# expect: compile forbidden name
# entry: on_board
# why: replace the attribute guard
_getattr_ = lambda obj, name: obj

def on_board(window, params, state):
    return 1
