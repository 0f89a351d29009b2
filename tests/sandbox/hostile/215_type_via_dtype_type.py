# expect: runtime error
# entry: on_board
# why: the scalar type reached from an array's dtype, then a string dtype through its astype
def on_board(window, params, state):
    v = window['SPEED'].v
    return v.dtype.type.astype(v[0], 'U8')
