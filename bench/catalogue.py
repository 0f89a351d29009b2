"""What the signal catalogue costs an agent per status tick, and its size on the wire.

Each status interval the agent builds the catalogue from its store and decides
whether it is worth sending (agent/catalogue.py); most ticks send nothing. Measured
against what every tick already pays: building and encoding the VehicleStatus (which
lists the same signal names). Every signal of the RAV4 DBC, a store with `--samples`
per signal at 50 Hz.

    .venv/bin/python bench/catalogue.py [--ticks 200] [--samples 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oodida.agent.catalogue import CatalogueReporter  # noqa: E402
from oodida.agent.store import SignalStore  # noqa: E402
from oodida.hw.dbc import SignalDecoder  # noqa: E402
from oodida.wire.codec import encode_payload  # noqa: E402
from oodida.wire.messages import SourceState, VehicleStatus  # noqa: E402

DBC = Path(__file__).resolve().parents[1] / "data" / "toyota_rav4_2017.dbc"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    decoder = SignalDecoder(DBC)
    store = SignalStore()
    names = list(decoder.signal_names)
    store.declare(names)
    t = np.arange(args.samples) * 0.02
    store.add_batch({n: (t, t) for n in names})
    reporter = CatalogueReporter(store.rates, [decoder], refresh=1e9)
    first = reporter(True)
    assert first is not None
    size = len(encode_payload(first))

    def status() -> bytes:
        return encode_payload(VehicleStatus(
            frames=1, unknown_frames=0, malformed_frames=0, signal_time=1.0,
            sources=[SourceState(name="0:log", state="running", frames=1)], signals=store.names,
        ))

    started = time.perf_counter()
    for _ in range(args.ticks):
        status()
    baseline = (time.perf_counter() - started) / args.ticks
    started = time.perf_counter()
    sent = 0
    for _ in range(args.ticks):
        sent += reporter(False) is not None
    tick = (time.perf_counter() - started) / args.ticks
    print(f"{len(names)} signals; catalogue {size} bytes, status {len(status())} bytes")
    print(f"status build+encode {baseline * 1e3:.3f} ms/tick (baseline)")
    print(f"catalogue check     {tick * 1e3:.3f} ms/tick ({tick / baseline:.1f}x the status), "
          f"sent {sent} of {args.ticks}")


if __name__ == "__main__":
    main()
