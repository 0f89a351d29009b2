# expect: runtime error
# entry: on_board
# why: an object array holds arbitrary Python objects
def on_board(window, params, state):
    return window['SPEED'].v.astype('O')
