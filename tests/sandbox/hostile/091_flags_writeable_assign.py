# expect: runtime forbidden attribute
# entry: on_board
# why: make the window writable through the flags object
def on_board(window, params, state):
    f = window['SPEED'].v.flags
    f.writeable = True
    return 1
