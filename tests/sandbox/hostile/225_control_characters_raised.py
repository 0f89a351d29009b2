# expect: runtime error
# entry: on_board
# why: a raised message that would forge a log record and clear the terminal where it is shown
def on_board(window, params, state):
    raise ValueError("\x1b[2J\n2026-01-01 00:00:00,000 CRITICAL server: forged record")
