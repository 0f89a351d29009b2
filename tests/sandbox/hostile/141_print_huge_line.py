# expect: ok
# entry: on_board
# why: one huge line is cut at the bound too
def on_board(window, params, state):
    print('z' * 10 ** 7)
    return len(printed)
