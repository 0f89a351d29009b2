# expect: compile forbidden attribute
# why: walk from a tuple to object's subclasses
def on_board(window, params, state):
    return ().__class__.__mro__[1].__subclasses__()
