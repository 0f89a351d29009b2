# expect: compile forbidden name
# entry: on_board
# why: reach the builtins dict
def on_board(window, params, state):
    return __builtins__['__import__']('os')
