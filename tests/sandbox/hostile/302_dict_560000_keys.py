# expect: runtime result too large
# entry: on_board
# why: 560,000 keys: the check once counted the values only, the pipe's scan keys and values (1.12 million items), and killed the worker
def on_board(window, params, state):
    return {str(i): 0 for i in range(560000)}
