# expect: compile forbidden attribute
# entry: on_board
# why: format_map walks attributes of mapping values
def on_board(window, params, state):
    return '{w.v.ctypes}'.format_map({'w': window['SPEED']})
