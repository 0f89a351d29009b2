# expect: compile forbidden name
# entry: on_board
# why: bytearray is not in the sandbox (bytes is)
def on_board(window, params, state):
    return len(bytearray(10 ** 11))
