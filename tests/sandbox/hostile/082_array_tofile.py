# expect: compile forbidden attribute
# entry: on_board
# why: ndarray.tofile writes files
def on_board(window, params, state):
    window['SPEED'].v.tofile('/tmp/oodida-leak')
    return 1
