# expect: runtime error
# entry: on_board
# why: unbounded recursion
def on_board(window, params, state):
    def down(n):
        return down(n + 1)
    return down(0)
