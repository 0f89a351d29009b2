# expect: compile forbidden name
# entry: on_board
# why: object is the root of every class walk
def on_board(window, params, state):
    return object()
