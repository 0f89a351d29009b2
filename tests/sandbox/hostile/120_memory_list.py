# expect: runtime memory
# entry: on_board
# why: ten billion list slots
def on_board(window, params, state):
    return len([0] * 10 ** 10)
