# expect: runtime disallowed return type
# entry: on_board
# deploy: refused disallowed return type
# why: an exception object carries a traceback
def on_board(window, params, state):
    try:
        1 / 0
    except ZeroDivisionError as e:
        return {'error': e}
