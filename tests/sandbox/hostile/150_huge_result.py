# expect: runtime result too large
# entry: on_board
# why: two million items
def on_board(window, params, state):
    return list(range(2000000))
