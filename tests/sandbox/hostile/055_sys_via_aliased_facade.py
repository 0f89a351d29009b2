# expect: runtime forbidden attribute
# entry: on_board
# why: the same through an alias the compile check cannot follow
import statistics

def on_board(window, params, state):
    mods = [statistics]
    return mods[0].sys.modules['os'].environ
