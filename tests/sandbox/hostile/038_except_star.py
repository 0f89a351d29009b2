# expect: compile forbidden syntax
# entry: on_board
# why: except* is outside the guarded subset (RestrictedPython refuses TryStar)
def on_board(window, params, state):
    try:
        pass
    except* ValueError:
        pass
    return 1
