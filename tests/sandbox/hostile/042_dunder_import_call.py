# expect: compile forbidden name
# entry: on_board
# why: __import__ called by name
def on_board(window, params, state):
    return __import__('os').environ
