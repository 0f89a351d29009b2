# expect: compile forbidden attribute
# why: __context__ chains reach library exceptions
def on_board(window, params, state):
    try:
        {}['x']
    except KeyError as e:
        return e.__context__
