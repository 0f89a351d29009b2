# expect: compile forbidden import
# entry: on_board
# why: an import hidden in a function body
def on_board(window, params, state):
    import subprocess
    return subprocess.run(['id'])
