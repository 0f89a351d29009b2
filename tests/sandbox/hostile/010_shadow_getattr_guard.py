# expect: compile forbidden name
# why: replace the attribute guard
_getattr_ = None

def on_board(window, params, state):
    return 1
