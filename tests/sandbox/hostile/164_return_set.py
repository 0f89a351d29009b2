# expect: runtime disallowed return type
# entry: on_board
# why: a set is not plain data here
def on_board(window, params, state):
    return {1, 2}
