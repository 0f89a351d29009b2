# expect: compile forbidden name
# entry: on_board
# why: format() calls __format__ with a spec the analyst controls
def on_board(window, params, state):
    return format(window['SPEED'].v, '')
