# expect: compile forbidden name
# why: the format() builtin calls __format__ with a spec the analyst controls
def on_board(window, params, state):
    return format(window['SPEED'].v, '')
