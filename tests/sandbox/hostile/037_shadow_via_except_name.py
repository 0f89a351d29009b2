# expect: compile forbidden name
# entry: on_board
# why: bind a guard name as an exception target
def on_board(window, params, state):
    try:
        1 / 0
    except ZeroDivisionError as _getitem_:
        return 1
