# expect: runtime disallowed return type
# entry: on_board
# deploy: refused disallowed return type
# why: an entry point with yield always returns a generator: refused at submit, before any vehicle runs it
def on_board(window, params, state):
    yield 1
