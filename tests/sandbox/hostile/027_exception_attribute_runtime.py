# expect: runtime forbidden attribute
# entry: on_board
# why: only .args of an exception is readable; .name and the like are refused when the code runs
def on_board(window, params, state):
    try:
        undefined_here
    except NameError as e:
        return e.name
