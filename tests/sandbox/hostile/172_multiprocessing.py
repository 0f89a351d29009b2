# expect: compile forbidden import
# entry: on_board
# why: a process pool forks
from multiprocessing import Pool

def on_board(window, params, state):
    return Pool(64).map(abs, range(10))
