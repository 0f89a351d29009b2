# expect: runtime error
# entry: on_board
# why: a keyword the method's allow-list does not name (subok hands back subclasses; a future keyword likewise)
def on_board(window, params, state):
    return window['SPEED'].v.astype('float32', subok=False)
