# expect: compile forbidden import
# why: send data out
import socket

def on_board(window, params, state):
    s = socket.create_connection(('127.0.0.1', 9))
    s.sendall(b'secret')
