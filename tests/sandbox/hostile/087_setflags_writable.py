# expect: compile forbidden attribute
# entry: on_board
# why: make the shared window writable
def on_board(window, params, state):
    window['SPEED'].v.setflags(write=True)
    return 1
