# expect: killed timeout
# why: never returns
def on_board(window, params, state):
    while True:
        pass
