# expect: compile forbidden name
# entry: on_board
# why: read the parent's environment
def on_board(window, params, state):
    return open('/proc/1/environ', 'rb').read()
