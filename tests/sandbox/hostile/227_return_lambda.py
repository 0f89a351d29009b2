# expect: runtime disallowed return type
# entry: on_board
# deploy: refused disallowed return type
# why: a lambda can never be sent: submit and deploy refuse it, as try would at the first call
def on_board(window, params, state):
    return {"f": lambda x: x}
