# expect: compile forbidden import
# why: an import hidden in a function body
def on_board(window, params, state):
    import subprocess
    return subprocess.run(['id'])
