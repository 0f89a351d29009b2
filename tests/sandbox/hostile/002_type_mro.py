# expect: compile forbidden name
# why: type() is the door to the class hierarchy
def on_board(window, params, state):
    return type(()).mro()
