# expect: ok
# entry: on_board
# why: keys and values with newlines and ANSI escapes are data; every table, try and log shows them escaped
def on_board(window, params, state):
    return {"\x1b[2J\nCRITICAL x": "\n\x1b[31mforged\r", "ok": "\u202eevil"}
