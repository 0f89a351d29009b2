# expect: killed timeout
# why: 9**9**9 is too big to compute
def on_board(window, params, state):
    return 9 ** 9 ** 9
