# expect: killed crash
# entry: on_board
# why: a chain of 300000 map objects overflows the C stack: CPython segfaults (python/cpython#103503), RestrictedPython cannot see it
def on_board(window, params, state):
    it = [1.0]
    for i in range(300000):
        it = map(abs, it)
    return list(it)
