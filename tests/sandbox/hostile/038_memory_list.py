# expect: runtime memory
# why: ten billion list slots
def on_board(window, params, state):
    return len([0] * 10 ** 10)
