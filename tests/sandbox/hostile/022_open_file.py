# expect: compile forbidden name
# why: open a file
def on_board(window, params, state):
    return open('/etc/passwd').read()
