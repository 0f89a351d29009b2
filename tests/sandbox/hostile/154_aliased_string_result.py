# expect: runtime result too large
# entry: on_board
# why: one megabyte string, referenced twenty times: each copy is sent
def on_board(window, params, state):
    s = 'x' * 10 ** 6
    return [s] * 20
