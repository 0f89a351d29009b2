# expect: runtime error
# entry: on_board
# why: SystemExit raised by a module does not stop the worker
def on_board(window, params, state):
    raise SystemExit(0)
