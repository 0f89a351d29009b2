# expect: compile forbidden attribute
# why: an exception's traceback holds frames
def on_board(window, params, state):
    try:
        1 / 0
    except ZeroDivisionError as e:
        return e.__traceback__.tb_frame.f_globals
