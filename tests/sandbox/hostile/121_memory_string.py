# expect: runtime memory
# entry: on_board
# why: a string bigger than the address space
def on_board(window, params, state):
    return len('x' * 10 ** 12)
