# expect: compile forbidden import
# entry: on_board
# why: an HTTP request
from urllib.request import urlopen

def on_board(window, params, state):
    return urlopen('http://127.0.0.1:9/?d=' + str(len(window))).read()
