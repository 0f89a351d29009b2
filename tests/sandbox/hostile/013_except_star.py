# expect: compile forbidden syntax
# why: except* groups are outside the guarded subset
def on_board(window, params, state):
    try:
        pass
    except* ValueError:
        pass
