# expect: compile forbidden name
# entry: on_board
# why: replace the import hook
def on_board(window, params, state):
    __import__ = None
    return 1
