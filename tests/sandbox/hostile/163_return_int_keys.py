# expect: runtime disallowed return type
# entry: on_board
# deploy: refused disallowed return type
# why: dict keys must be str
def on_board(window, params, state):
    return {1: 'a'}
