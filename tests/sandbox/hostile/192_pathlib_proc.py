# expect: compile forbidden import
# entry: on_board
# why: pathlib reads files
from pathlib import Path

def on_board(window, params, state):
    return Path('/proc/self/environ').read_bytes()
