# expect: ok
# entry: on_board
# why: print output is collected and bounded: a flood costs no memory
def on_board(window, params, state):
    for i in range(200000):
        print('flood' * 20)
    return 'survived'
