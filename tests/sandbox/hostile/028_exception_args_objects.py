# expect: runtime error
# entry: on_board
# why: exception args come back as plain values; an object in them only as its type's name
def on_board(window, params, state):
    try:
        raise ValueError(window['SPEED'])
    except ValueError as e:
        return e.args[0].v
