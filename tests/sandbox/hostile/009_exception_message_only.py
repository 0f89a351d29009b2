# expect: runtime error
# why: an ordinary error becomes a message: no frame, no path
def on_board(window, params, state):
    return 1 / 0
