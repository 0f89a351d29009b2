# expect: compile forbidden syntax
# entry: on_board
# why: coroutines carry frames (cr_frame) and an event loop would need more
async def helper():
    return 1

def on_board(window, params, state):
    return 1
