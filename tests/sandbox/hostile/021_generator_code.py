# expect: compile forbidden attribute
# entry: on_board
# why: gi_code hands out a code object
def on_board(window, params, state):
    def gen():
        yield 1
    return gen().gi_code
