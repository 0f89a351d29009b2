# expect: ok
# entry: on_board
# why: where= on a reduction is allowed: numpy fills what it skips with the identity, so nothing uninitialised shows
import numpy as np

def on_board(window, params, state):
    v = np.arange(10.0)
    mask = v > 4
    out = [float(v.sum(where=mask)), float(np.sum(v, where=mask)), float(v.max(where=mask, initial=-1.0)),
           float(np.mean(v, where=mask))]
    if out != [35.0, 35.0, 9.0, 7.0]:
        raise ValueError(f"reductions with where= gave {out}")
    return out
