# expect: compile forbidden syntax
# entry: on_board
# why: a dict subclass with __eq__/__hash__ could run code in the agent when it compares or hashes the result
class Evil(dict):
    def __eq__(self, other):
        return True

def on_board(window, params, state):
    return Evil()
