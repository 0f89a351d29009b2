# expect: compile forbidden name
# why: getattr with a computed name
def on_board(window, params, state):
    return getattr(window, '__cl' + 'ass__')
