# expect: compile forbidden import
# entry: on_board
# why: from-import
from os import environ

def on_board(window, params, state):
    return dict(environ)
