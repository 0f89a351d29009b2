# expect: compile forbidden import
# entry: on_board
# why: threads need threading
import threading

def on_board(window, params, state):
    while True:
        threading.Thread(target=on_board, args=(window, params, state)).start()
