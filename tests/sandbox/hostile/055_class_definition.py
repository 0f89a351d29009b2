# expect: compile forbidden syntax
# why: classes could override __eq__/__hash__ in results
class Evil(dict):
    pass

def on_board(window, params, state):
    return Evil()
