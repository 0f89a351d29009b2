# expect: compile forbidden attribute
# entry: on_board
# why: ndarray.dump pickles to a file
def on_board(window, params, state):
    window['SPEED'].v.dump('/tmp/oodida-leak')
    return 1
