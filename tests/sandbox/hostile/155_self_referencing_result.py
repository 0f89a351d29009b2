# expect: runtime result too large
# entry: on_board
# why: a list that contains itself
def on_board(window, params, state):
    x = []
    x.append(x)
    return x
