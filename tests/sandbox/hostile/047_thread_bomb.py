# expect: compile forbidden import
# why: threads need threading
import threading

def on_board(window, params, state):
    while True:
        threading.Thread(target=print).start()
