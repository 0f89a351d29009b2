# expect: ok
# why: printing is collected and bounded, never grows without limit
def on_board(window, params, state):
    for i in range(200000):
        print('flood' * 20)
    return 'survived'
