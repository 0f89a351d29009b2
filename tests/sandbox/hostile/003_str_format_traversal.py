# expect: compile forbidden attribute
# why: str.format reaches attributes without the guard
def on_board(window, params, state):
    return '{0.t.base}'.format(window['SPEED'])
