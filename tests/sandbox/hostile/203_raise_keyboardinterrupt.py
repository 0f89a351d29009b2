# expect: runtime error
# entry: on_board
# why: neither does KeyboardInterrupt
def on_board(window, params, state):
    raise KeyboardInterrupt
