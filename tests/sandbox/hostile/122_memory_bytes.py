# expect: runtime memory
# entry: on_board
# why: a hundred gigabytes of zero bytes
def on_board(window, params, state):
    return len(bytes(10 ** 11))
