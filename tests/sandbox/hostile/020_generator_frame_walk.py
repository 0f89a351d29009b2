# expect: compile forbidden attribute
# entry: on_board
# why: gi_frame.f_back reaches the caller's frame and its globals
def on_board(window, params, state):
    g = (x for x in [1])
    return g.gi_frame.f_back.f_globals
