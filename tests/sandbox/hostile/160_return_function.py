# expect: runtime disallowed return type
# entry: on_board
# deploy: refused disallowed return type
# why: a function object carries its globals
def on_board(window, params, state):
    return on_board
