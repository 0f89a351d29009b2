"""Real data for the analytics tests: two signals of a 2017 RAV4 on the highway,
decoded once per session, and a "fleet" made by cutting that drive into vehicles."""

from __future__ import annotations

from pathlib import Path

import can
import cantools
import numpy as np
import pytest

from oodida.analytics import Series

DATA = Path(__file__).resolve().parents[2] / "data"
LOG = DATA / "rav4-2017-comma2k19.log"
DBC = DATA / "toyota_rav4_2017.dbc"

# signal name in the window -> (DBC message, DBC signal)
SIGNALS = {"SPEED": ("SPEED", "SPEED"), "STEER_ANGLE": ("STEER_ANGLE_SENSOR", "STEER_ANGLE")}

# Where the drive is cut into vehicles, as fractions of its duration: unequal
# pieces, and one vehicle ("v3") whose window is empty (two equal cuts).
CUTS = (0.0, 0.07, 0.31, 0.58, 0.58, 0.66, 1.0)
VEHICLES = ("v0", "v1", "v2", "v3", "v4", "v5")


@pytest.fixture(scope="session")
def rav4() -> dict[str, Series]:
    db = cantools.database.load_file(str(DBC), strict=False)
    wanted = {db.get_message_by_name(msg).frame_id: (name, sig) for name, (msg, sig) in SIGNALS.items()}
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in SIGNALS}
    for frame in can.LogReader(str(LOG)):
        if frame.channel != "can0" or frame.arbitration_id not in wanted:
            continue
        name, sig = wanted[frame.arbitration_id]
        decoded = db.decode_message(frame.arbitration_id, frame.data, decode_choices=False)
        samples[name][0].append(frame.timestamp)
        samples[name][1].append(float(decoded[sig]))
    return {name: Series(np.array(t), np.array(v)) for name, (t, v) in samples.items()}


def split_by_time(data: dict[str, Series], cuts: tuple[float, ...] = CUTS) -> dict[str, dict[str, Series]]:
    """Cut every signal at the same instants: vehicle i gets [cut_i, cut_i+1)."""
    t0 = min(s.t[0] for s in data.values())
    t1 = max(s.t[-1] for s in data.values())
    instants = [t0 + c * (t1 - t0) for c in cuts]
    instants[-1] = np.inf
    fleet = {}
    for i, vehicle in enumerate(VEHICLES[: len(cuts) - 1]):
        window = {}
        for name, s in data.items():
            lo, hi = np.searchsorted(s.t, [instants[i], instants[i + 1]], side="left")
            window[name] = Series(s.t[lo:hi], s.v[lo:hi])
        fleet[vehicle] = window
    return fleet


@pytest.fixture(scope="session")
def fleet(rav4: dict[str, Series]) -> dict[str, dict[str, Series]]:
    windows = split_by_time(rav4)
    assert all(len(s) == 0 for s in windows["v3"].values())
    assert sum(len(w["SPEED"]) for w in windows.values()) == len(rav4["SPEED"])
    return windows
