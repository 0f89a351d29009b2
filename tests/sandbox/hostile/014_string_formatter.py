# expect: compile forbidden import
# entry: on_board
# why: string.Formatter().get_field walks attributes
import string

def on_board(window, params, state):
    return string.Formatter().get_field('0.__class__', [1], {})
