# expect: runtime result too large
# entry: on_board
# why: an integer of five thousand digits
def on_board(window, params, state):
    return 10 ** 5000
