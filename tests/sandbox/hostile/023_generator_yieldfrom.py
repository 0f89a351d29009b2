# expect: compile forbidden attribute
# entry: on_board
# why: gi_yieldfrom reaches the inner generator and its frame
def on_board(window, params, state):
    def inner():
        yield 1
    def outer():
        yield from inner()
    g = outer()
    next(g)
    return g.gi_yieldfrom.gi_frame
