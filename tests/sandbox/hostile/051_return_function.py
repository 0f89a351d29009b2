# expect: runtime disallowed return type
# why: a function object carries globals
def on_board(window, params, state):
    return on_board
