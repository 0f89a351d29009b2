# expect: runtime forbidden attribute
# entry: on_board
# why: the same through the flags object's items
def on_board(window, params, state):
    f = window['SPEED'].v.flags
    f['WRITEABLE'] = True
    return 1
