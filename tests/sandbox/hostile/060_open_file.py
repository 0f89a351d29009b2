# expect: compile forbidden name
# entry: on_board
# why: open a file
def on_board(window, params, state):
    return open('/etc/passwd').read()
