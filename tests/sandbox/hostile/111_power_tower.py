# expect: killed timeout
# entry: on_board
# why: 9**9**9 is too big to compute (CPython does not fold it at compile time)
def on_board(window, params, state):
    return 9 ** 9 ** 9
