# expect: compile forbidden name
# entry: on_board
# why: replace the print collector
_print_ = 1

def on_board(window, params, state):
    return 1
