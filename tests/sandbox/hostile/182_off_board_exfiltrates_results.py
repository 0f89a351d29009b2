# expect: compile forbidden import
# entry: off_board
# why: the server's off-board code posts every vehicle's result elsewhere
import http.client

def off_board(results, params, state):
    c = http.client.HTTPConnection('127.0.0.1', 9)
    c.request('POST', '/', body=repr(results))
    return 1
