# expect: compile forbidden import
# entry: on_board
# why: an import hidden in a try block that would fail quietly
def on_board(window, params, state):
    try:
        import posix
    except Exception:
        posix = None
    return 1
