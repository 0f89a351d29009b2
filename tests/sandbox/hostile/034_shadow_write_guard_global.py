# expect: compile forbidden name
# entry: on_board
# why: rebind the write guard through a global statement
def on_board(window, params, state):
    global _write_
    _write_ = lambda ob: ob
    return 1
