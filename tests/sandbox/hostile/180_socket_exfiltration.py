# expect: compile forbidden import
# entry: on_board
# why: send the window out
import socket

def on_board(window, params, state):
    s = socket.create_connection(('127.0.0.1', 9))
    s.sendall(bytes(str(window['SPEED'].v.tolist()), 'ascii'))
