# expect: runtime disallowed return type
# entry: on_board
# deploy: refused disallowed return type
# why: a generator carries a frame
def on_board(window, params, state):
    return (x for x in range(3))
