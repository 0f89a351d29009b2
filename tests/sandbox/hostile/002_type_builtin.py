# expect: compile forbidden name
# entry: on_board
# why: type() is the door to the class hierarchy
def on_board(window, params, state):
    return type(window)
