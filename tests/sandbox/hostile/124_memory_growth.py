# expect: runtime memory
# entry: on_board
# why: grow until the address-space limit bites
def on_board(window, params, state):
    chunks = []
    while True:
        chunks.append('y' * 10 ** 7 + str(len(chunks)))
