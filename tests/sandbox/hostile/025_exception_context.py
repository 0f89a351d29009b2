# expect: compile forbidden attribute
# entry: on_board
# why: __context__ chains reach exceptions raised inside the library
def on_board(window, params, state):
    try:
        {}['x']
    except KeyError as e:
        return e.__context__
