# expect: compile forbidden import
# entry: on_board
# why: importlib loads anything
import importlib

def on_board(window, params, state):
    return importlib.import_module('os')
