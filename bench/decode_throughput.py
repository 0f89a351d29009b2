"""How many CAN frames a second the agent can decode: SignalDecoder against cantools.

Run on demand, not as a test:  .venv/bin/python bench/decode_throughput.py [--repeats N]

The log is read once into memory; each variant then loops over the same 53,800 can0
frames, best of N interleaved runs. cantools' `decode_message` raises on ids it does not know, so
its loop skips those by a set-membership test (cheaper than try/except, since 28% of
the can0 frames are unknown); the decoder returns None for them by itself.

The batch variants decode the same frames held in columns (`FrameBatch`), as a log
replay holds them: the whole log in one call, and in the pump's 4,096-frame batches.
Building the columns is timed apart (a replay does it once per log; a bus per batch).
"Ingest" adds the store: per-frame `decode` + `SignalStore.add` against `decode_batch`
+ `add_batch` in the pump's batches. Goal: a batch path at >= 2 M frames/s and >= 5x
cantools, all signals, both measured in this run.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

# This checkout's code, not whatever copy of oodida the venv has installed: a bench
# run from a branch must measure that branch.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import can  # after the path is set
import cantools
import numpy as np
from cantools.database.can import Database

from oodida.agent.pump import BATCH_FRAMES
from oodida.agent.store import SignalStore
from oodida.hw.dbc import SignalDecoder
from oodida.hw.frames import FrameBatch

DATA = Path(__file__).resolve().parents[1] / "data"
LOG = DATA / "rav4-2017-comma2k19.log"
DBC = DATA / "toyota_rav4_2017.dbc"
TWO_SIGNALS = ["SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE"]  # bare STEER_ANGLE is ambiguous here

Frames = list[tuple[int, bytes]]
TimedFrames = list[tuple[float, int, bytes]]


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


def batch_loop(decoder: SignalDecoder, batch: FrameBatch, size: int) -> Callable[[], int]:
    pieces = [batch[start : start + size] for start in range(0, len(batch), size)]
    decode_batch = decoder.decode_batch

    def run() -> int:
        values = 0
        for piece in pieces:
            for _, v in decode_batch(piece).values():
                values += v.size
        return values

    return run


def ingest_frames(decoder: SignalDecoder, frames: TimedFrames) -> Callable[[], int]:
    """Per-frame decode and store append, as the pump did before batches."""
    decode = decoder.decode

    def run() -> int:
        store = _store(decoder)
        add = store.add
        for timestamp, frame_id, data in frames:
            out = decode(frame_id, data)
            if out:
                add(timestamp, out)
        return sum(store._buffers[name].total for name in decoder.signal_names)

    return run


def ingest_batches(decoder: SignalDecoder, batch: FrameBatch, size: int) -> Callable[[], int]:
    pieces = [batch[start : start + size] for start in range(0, len(batch), size)]

    def run() -> int:
        store = _store(decoder)
        for piece in pieces:
            store.add_batch(decoder.decode_batch(piece))
        return sum(store._buffers[name].total for name in decoder.signal_names)

    return run


def _store(decoder: SignalDecoder) -> SignalStore:
    store = SignalStore(retention=300.0, max_samples=200_000)  # the agent's defaults
    store.declare(list(decoder.signal_names))
    return store


GOAL_RATE = 2_000_000
GOAL_RATIO = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=7, help="runs per variant; the best counts (default 7)"
    )
    args = parser.parse_args()

    with can.LogReader(LOG) as reader:
        timed = [(m.timestamp, m.arbitration_id, bytes(m.data)) for m in reader if m.channel == "can0"]
    frames = [(frame_id, data) for _, frame_id, data in timed]
    db = cantools.database.load_file(DBC, strict=False)
    assert isinstance(db, Database)
    known_ids = {message.frame_id for message in db.messages}
    known = sum(1 for frame_id, _ in frames if frame_id in known_ids)
    print(
        f"{LOG.name}: {len(frames)} can0 frames, {known} with an id the DBC knows; "
        f"Python {platform.python_version()}, cantools {cantools.__version__}, "
        f"numpy {np.__version__}, best of {args.repeats}"
    )
    started = time.perf_counter()
    batch = FrameBatch.from_frames(timed)
    columns = time.perf_counter() - started
    print(
        f"building the columns (FrameBatch.from_frames), once: {columns * 1e3:.1f} ms, "
        f"{columns / len(timed) * 1e6:.2f} us/frame"
    )

    two = f"2 signals ({', '.join(TWO_SIGNALS)})"
    variants = [
        ("(a) cantools decode_message, unknown ids skipped by membership test", cantools_loop(db, frames)),
        ("(b) SignalDecoder.decode per frame, all signals", decoder_loop(SignalDecoder(DBC), frames)),
        (f"(c) SignalDecoder.decode per frame, {two}", decoder_loop(SignalDecoder(DBC, TWO_SIGNALS), frames)),
        ("(d) decode_batch, all signals, whole log in one batch", batch_loop(SignalDecoder(DBC), batch, len(batch))),
        (
            f"(e) decode_batch, all signals, {BATCH_FRAMES}-frame batches (the pump's)",
            batch_loop(SignalDecoder(DBC), batch, BATCH_FRAMES),
        ),
        (f"(f) decode_batch, {two}, whole log", batch_loop(SignalDecoder(DBC, TWO_SIGNALS), batch, len(batch))),
        (
            f"(g) decode_batch, {two}, {BATCH_FRAMES}-frame batches",
            batch_loop(SignalDecoder(DBC, TWO_SIGNALS), batch, BATCH_FRAMES),
        ),
        ("(h) ingest per frame: decode + SignalStore.add, all signals", ingest_frames(SignalDecoder(DBC), timed)),
        (
            f"(i) ingest in batches: decode_batch + add_batch, all signals, {BATCH_FRAMES}-frame batches",
            ingest_batches(SignalDecoder(DBC), batch, BATCH_FRAMES),
        ),
    ]
    results = best_rates([run for _, run in variants], args.repeats)
    rates = [len(frames) / seconds for seconds, _ in results]
    baseline = rates[0]
    for (label, _), (_seconds, values), rate in zip(variants, results, rates, strict=True):
        print(
            f"{label}\n    {rate:12,.0f} can0 frames/s  {1e6 / rate:6.2f} us/frame  "
            f"{values:7d} values/pass  x{rate / baseline:.2f} vs (a)"
        )
    assert results[1][1] == results[3][1] == results[4][1], "batch and per-frame decoded different counts"
    assert results[2][1] == results[5][1] == results[6][1], "batch and per-frame decoded different counts"
    assert results[7][1] == results[8][1], "batch and per-frame ingest stored different counts"
    print(f"ratios: (d)/(b) x{rates[3] / rates[1]:.1f}, (e)/(b) x{rates[4] / rates[1]:.1f}, "
          f"(g)/(c) x{rates[6] / rates[2]:.1f}, (i)/(h) x{rates[8] / rates[7]:.1f}")
    for index, label in ((3, "(d)"), (4, "(e)")):
        met = rates[index] >= GOAL_RATE and rates[index] / baseline >= GOAL_RATIO
        print(
            f"goal (>= {GOAL_RATE / 1e6:g} M frames/s and >= {GOAL_RATIO:g}x cantools, all signals) by {label}: "
            f"{'met' if met else 'NOT met'} ({rates[index] / 1e6:.2f} M frames/s, x{rates[index] / baseline:.1f})"
        )


if __name__ == "__main__":
    main()
