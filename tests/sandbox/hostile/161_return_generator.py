# expect: runtime disallowed return type
# entry: on_board
# why: a generator carries a frame
def on_board(window, params, state):
    return (x for x in range(3))
