# expect: compile forbidden syntax
# entry: on_board
# why: a metaclass runs code when the class is built
class Meta(type):
    pass

class A(metaclass=Meta):
    pass

def on_board(window, params, state):
    return 1
