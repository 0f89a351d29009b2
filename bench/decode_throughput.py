"""How many CAN frames a second the agent can decode: SignalDecoder against cantools.

Run on demand, not as a test:  .venv/bin/python bench/decode_throughput.py [--repeats N]

The log is read once into memory; each variant then loops over the same 53,800 can0
frames, best of N interleaved runs. cantools' `decode_message` raises on ids it does not know, so
its loop skips those by a set-membership test (cheaper than try/except, since 28% of
the can0 frames are unknown); the decoder returns None for them by itself.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

import can
import cantools
from cantools.database.can import Database

from hw.dbc import SignalDecoder

DATA = Path(__file__).resolve().parents[1] / "data"
LOG = DATA / "rav4-2017-comma2k19.log"
DBC = DATA / "toyota_rav4_2017.dbc"
TWO_SIGNALS = ["SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE"]  # bare STEER_ANGLE is ambiguous here

Frames = list[tuple[int, bytes]]


def best_rates(runs: list[Callable[[], int]], repeats: int) -> list[tuple[float, int]]:
    """Fastest time of each run, and the values it produced.

    Rounds interleave the variants, so a burst of load on a shared machine slows
    one round of all of them rather than every run of one.
    """
    best = [float("inf")] * len(runs)
    values = [0] * len(runs)
    for _ in range(repeats):
        for index, run in enumerate(runs):
            started = time.perf_counter()
            values[index] = run()
            best[index] = min(best[index], time.perf_counter() - started)
    return list(zip(best, values, strict=True))


def cantools_loop(db: Database, frames: Frames) -> Callable[[], int]:
    known = {message.frame_id for message in db.messages}
    decode_message = db.decode_message

    def run() -> int:
        values = 0
        for frame_id, data in frames:
            if frame_id in known:
                values += len(decode_message(frame_id, data, decode_choices=False, scaling=True))
        return values

    return run


def decoder_loop(decoder: SignalDecoder, frames: Frames) -> Callable[[], int]:
    decode = decoder.decode

    def run() -> int:
        values = 0
        for frame_id, data in frames:
            out = decode(frame_id, data)
            if out:
                values += len(out)
        return values

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=7, help="runs per variant; the best counts (default 7)"
    )
    args = parser.parse_args()

    with can.LogReader(LOG) as reader:
        frames = [(m.arbitration_id, bytes(m.data)) for m in reader if m.channel == "can0"]
    db = cantools.database.load_file(DBC, strict=False)
    assert isinstance(db, Database)
    known_ids = {message.frame_id for message in db.messages}
    known = sum(1 for frame_id, _ in frames if frame_id in known_ids)
    print(
        f"{LOG.name}: {len(frames)} can0 frames, {known} with an id the DBC knows; "
        f"Python {platform.python_version()}, cantools {cantools.__version__}, best of {args.repeats}"
    )

    variants = [
        ("(a) cantools decode_message, unknown ids skipped by membership test", cantools_loop(db, frames)),
        ("(b) SignalDecoder, all signals", decoder_loop(SignalDecoder(DBC), frames)),
        (
            f"(c) SignalDecoder, 2 signals ({', '.join(TWO_SIGNALS)})",
            decoder_loop(SignalDecoder(DBC, TWO_SIGNALS), frames),
        ),
    ]
    results = best_rates([run for _, run in variants], args.repeats)
    baseline = len(frames) / results[0][0]
    for (label, _), (seconds, values) in zip(variants, results, strict=True):
        rate = len(frames) / seconds
        print(
            f"{label}\n    {rate:12,.0f} can0 frames/s  {1e6 / rate:6.2f} us/frame  "
            f"{values:7d} values/pass  x{rate / baseline:.2f} vs (a)"
        )


if __name__ == "__main__":
    main()
