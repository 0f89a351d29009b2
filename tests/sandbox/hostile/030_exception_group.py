# expect: compile forbidden name
# entry: on_board
# why: exception groups are outside the guarded subset
def on_board(window, params, state):
    raise ExceptionGroup('g', [ValueError(1)])
