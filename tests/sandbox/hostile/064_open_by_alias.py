# expect: compile forbidden name
# entry: on_board
# why: take open under another name
reader = open

def on_board(window, params, state):
    return reader('/etc/hostname').read()
