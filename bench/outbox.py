"""What a durable outbox costs per result: put then ack, on a real file.

Run on demand, not as a test:

    .venv/bin/python bench/outbox.py [--results 300] [--rounds 3] [--dir DIR] [--value-samples 16]

Each result is put (committed before `put` returns) and then acknowledged (deleted),
as the agent does for every result the server takes. Rows, same run, same results:

- memory: the in-memory outbox the agent had before (an OrderedDict, nothing on
  disk: a restart or a crash lost every unacknowledged result). The baseline.
- NORMAL: the SQLite outbox with `synchronous=NORMAL` (WAL): survives a crash of the
  agent (SIGKILL, OOM), but a power cut may lose the last commits.
- FULL: `synchronous=FULL` (WAL) for puts, what the agent uses: a committed result
  also survives a power cut (one fsync of the log per put). The ack's delete is
  committed without an fsync: a power cut may undo it, and the result is then sent
  again, which the server stores once.
- FULL+acks: FULL for the acks' deletes too (a second fsync per result), to show
  what the lighter acks save.

The rows take turns, `--rounds` times (a disk shared with other work is noisy), and
each figure is the median over the rounds. Printed: results/s, the median and 99th
percentile of one put+ack (the time the event loop is held per result), and the ratio
of each to the memory baseline. The
figure that decides is the per-result time against how often results come (at most
a few per second per assignment): `--dir` must be on the vehicle's kind of storage
(a tmpfs makes fsync free and FULL look like NORMAL).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oodida.agent.outbox import Outbox
from oodida.analytics.arrays import to_wire
from oodida.wire.codec import encode_payload
from oodida.wire.messages import Result


class MemoryOutbox:
    """The agent's outbox before the SQLite one, as it was (agent/outbox.py on main)."""

    def __init__(self, max_results: int = 10_000) -> None:
        self.max_results = max_results
        self._results: OrderedDict[tuple[int, int], Result] = OrderedDict()

    def put(self, result: Result) -> None:
        self._results[(result.assignment, result.iteration)] = result
        while len(self._results) > self.max_results:
            self._results.popitem(last=False)

    def ack(self, key: tuple[int, int]) -> None:
        self._results.pop(key, None)

    def close(self) -> None:
        pass


def results(n: int, samples: int) -> list[Result]:
    rng = np.random.default_rng(1)
    return [
        Result(assignment=1, iteration=i + 1, vehicle="car-1", ok=True, code_hash="builtin:0.1",
               value={"mean": float(rng.normal()), "hist": to_wire(rng.normal(size=samples))},
               samples={"SPEED": 500}, t_start=0.0, t_end=5.0, elapsed=0.01)
        for i in range(n)
    ]


def measure(outbox: object, batch: list[Result]) -> dict[str, float]:
    times = []
    start = time.perf_counter()
    for r in batch:
        t0 = time.perf_counter()
        outbox.put(r)  # type: ignore[attr-defined]
        outbox.ack((r.assignment, r.iteration))  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    outbox.close()  # type: ignore[attr-defined]
    times.sort()
    return {
        "per_s": len(batch) / total,
        "median_ms": statistics.median(times) * 1000,
        "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))] * 1000,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=int, default=300, help="results put and acknowledged per row")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every row, taking turns")
    parser.add_argument("--value-samples", type=int, default=16, help="float64 samples in each result's value")
    parser.add_argument("--dir", default=None, help="where the outbox files go (default: a folder under /var/tmp)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    batch = results(args.results, args.value_samples)
    size = len(encode_payload(batch[0]))
    base = Path(args.dir) if args.dir else Path("/var/tmp" if os.path.isdir("/var/tmp") else tempfile.gettempdir())
    kinds = {
        "memory": lambda _: MemoryOutbox(),
        "NORMAL": lambda path: Outbox(path, synchronous="NORMAL"),
        "FULL": lambda path: Outbox(path, synchronous="FULL"),
        "FULL+acks": lambda path: Outbox(path, synchronous="FULL", light_acks=False),
    }
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in kinds}
    with tempfile.TemporaryDirectory(prefix="oodida-bench-outbox-", dir=base) as folder:
        for r in range(args.rounds):
            for name, make in kinds.items():
                rounds[name].append(measure(make(Path(folder) / f"{name}-{r}.sqlite3"), batch))
        fs = os.statvfs(folder)
    rows = {name: {k: statistics.median(m[k] for m in ms) for k in ms[0]} for name, ms in rounds.items()}
    base_row = rows["memory"]
    if args.json:
        print(json.dumps({"result_bytes": size, "dir": str(base), "rows": rows}, indent=2))
        return 0
    print(f"{args.results} results of {size} bytes each, put then acknowledged, {args.rounds} rounds; files in {base} "
          f"(block size {fs.f_bsize})")
    print(f"{'outbox':<10} {'results/s':>10} {'x memory':>9} {'median ms':>10} {'p99 ms':>8} {'x memory':>9}")
    for name, row in rows.items():
        print(f"{name:<10} {row['per_s']:>10.0f} {row['per_s'] / base_row['per_s']:>9.4f} "
              f"{row['median_ms']:>10.3f} {row['p99_ms']:>8.3f} {row['median_ms'] / base_row['median_ms']:>9.0f}")
    full, normal = rows["FULL"], rows["NORMAL"]
    print(f"FULL costs {full['median_ms'] - normal['median_ms']:.3f} ms more than NORMAL per result "
          f"({full['median_ms'] / normal['median_ms']:.1f}x); at 10 results/s a thread waits on the disk "
          f"{10 * full['median_ms'] / 10:.1f}% of the time. FULL acks would add "
          f"{rows['FULL+acks']['median_ms'] - full['median_ms']:.3f} ms per result")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
