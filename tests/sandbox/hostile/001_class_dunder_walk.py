# expect: compile forbidden attribute
# entry: on_board
# why: walk from a tuple to object's subclasses and a function's globals
def on_board(window, params, state):
    return ().__class__.__mro__[1].__subclasses__()
