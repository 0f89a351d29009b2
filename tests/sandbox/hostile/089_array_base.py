# expect: compile forbidden attribute
# entry: on_board
# why: a window array's base is the buffer behind it (the shared-memory arena without copies)
def on_board(window, params, state):
    return window['SPEED'].v.base
