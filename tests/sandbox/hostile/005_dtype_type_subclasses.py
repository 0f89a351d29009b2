# expect: compile forbidden attribute
# entry: on_board
# why: reach a class through an array's dtype, then its subclasses
def on_board(window, params, state):
    return window['SPEED'].v.dtype.type.__subclasses__()
