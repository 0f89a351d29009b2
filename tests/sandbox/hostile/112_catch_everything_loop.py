# expect: killed timeout
# entry: on_board
# why: a module that catches every exception still cannot catch SIGKILL
def on_board(window, params, state):
    while True:
        try:
            while True:
                pass
        except BaseException:
            pass
