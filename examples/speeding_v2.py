"""Version 2 of speeding.py, deployed into the running assignment by the demo:

    oodida deploy examples/speeding_v2.py --assignment ID --on-board

It also says by how much, on average, a vehicle was over the limit while it was
(`excess`, km/h). The off-board step of version 1 reads only what it knew, so only
the on-board side is replaced; the iteration in flight finishes with version 1.
"""

import numpy as np


def on_board(window, params, state):
    speed = window["SPEED"].v
    limit = params.get("limit", 65.0)
    over = speed[speed > limit]
    return {
        "samples": len(speed),
        "over": len(over),
        "top": float(np.max(speed)) if len(speed) else None,
        "excess": float(np.mean(over - limit)) if len(over) else 0.0,
    }
