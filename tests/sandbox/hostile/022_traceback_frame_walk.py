# expect: compile forbidden attribute
# entry: on_board
# why: an exception's traceback holds frames of the worker
def on_board(window, params, state):
    try:
        1 / 0
    except ZeroDivisionError as e:
        return e.__traceback__.tb_frame.f_back.f_globals
