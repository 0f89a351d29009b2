# expect: compile forbidden name
# entry: migrate
# why: migrate runs in the sandbox too
def on_board(window, params, state):
    return 1

def migrate(old_state):
    return open('/proc/self/maps').read()
