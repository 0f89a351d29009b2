# expect: compile forbidden name
# why: reach the builtins dict
def on_board(window, params, state):
    return __builtins__['open']('/etc/passwd')
