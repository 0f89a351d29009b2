# expect: compile forbidden import
# entry: on_board
# why: IMPORT_FROM falls back to sys.modules['numpy.ctypeslib'] when the module object has a __name__
from numpy import ctypeslib

def on_board(window, params, state):
    return ctypeslib.as_ctypes(window['SPEED'].v)
