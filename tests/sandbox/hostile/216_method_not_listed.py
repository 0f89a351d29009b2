# expect: runtime forbidden attribute
# entry: on_board
# why: a method outside the allow-list (resize grows an array in place; choose, to_device, ... likewise)
import numpy as np

def on_board(window, params, state):
    a = np.ones(4)
    a.resize(8, refcheck=False)
    return a
