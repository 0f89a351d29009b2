# expect: killed timeout
# entry: on_board
# why: never returns
def on_board(window, params, state):
    while True:
        pass
