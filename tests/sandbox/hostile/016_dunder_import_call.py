# expect: compile forbidden name
# why: __import__ by name
def on_board(window, params, state):
    return __import__('os').environ
