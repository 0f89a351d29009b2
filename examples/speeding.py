"""How much of the time is each vehicle over a speed limit? (an analyst's module)

`on_board` runs on every vehicle, in the sandbox, over its window of signals;
`off_board` runs on the server over the vehicles' answers. `state` is the previous
iteration's fleet result (None in the first), here used to report the trend.
"""

import numpy as np


def on_board(window, params, state):
    speed = window["SPEED"].v
    limit = params.get("limit", 65.0)
    return {
        "samples": len(speed),
        "over": int(np.count_nonzero(speed > limit)),
        "top": float(np.max(speed)) if len(speed) else None,
    }


def off_board(results, params, state):
    samples = sum(r["samples"] for r in results.values())
    over = sum(r["over"] for r in results.values())
    share = over / samples if samples else None
    trend = None
    if state is not None and share is not None and state["share_over"] is not None:
        trend = share - state["share_over"]
    return {"vehicles": len(results), "samples": samples, "share_over": share, "trend": trend}
