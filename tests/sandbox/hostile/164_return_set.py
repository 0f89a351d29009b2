# expect: runtime disallowed return type
# entry: on_board
# deploy: refused disallowed return type
# why: a set is not plain data here
def on_board(window, params, state):
    return {1, 2}
