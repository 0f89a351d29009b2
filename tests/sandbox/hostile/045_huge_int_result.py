# expect: runtime result too large
# why: an integer of thousands of digits
def on_board(window, params, state):
    return 10 ** 5000
