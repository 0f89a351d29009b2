# expect: runtime result too large
# entry: on_board
# why: nested deeper than the limit
def on_board(window, params, state):
    x = []
    for i in range(100):
        x = [x]
    return x
