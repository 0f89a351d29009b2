# expect: runtime forbidden attribute
# entry: on_board
# why: setting strides or shape reinterprets memory
def on_board(window, params, state):
    v = window['SPEED'].v
    v.strides = (0,)
    return 1
