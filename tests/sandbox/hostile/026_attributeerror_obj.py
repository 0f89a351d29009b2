# expect: compile forbidden attribute
# entry: on_board
# why: AttributeError.obj hands out the object the lookup failed on
def on_board(window, params, state):
    try:
        window['SPEED'].nope
    except AttributeError as e:
        return e.obj
