# expect: runtime forbidden attribute
# why: the same through the flags object
def on_board(window, params, state):
    f = window['SPEED'].v.flags
    f.writeable = True
    return 1
