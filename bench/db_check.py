"""What the server's database check at start costs, on a large database.

Run on demand, not as a test:

    .venv/bin/python bench/db_check.py [--rows 2000000] [--dir DIR] [--rounds 2]

Builds a server database (the real `Store`, results as a fleet sends them: a mean
partial per vehicle and iteration, about 200 bytes of CBOR each) and then times, in
the same run, on the same file, warm (file in the page cache) and cold (evicted with
posix_fadvise DONTNEED before each run, as after a reboot):

- read: reading the whole file sequentially, the floor for anything that looks at
  every page. The baseline.
- check_database: what `oodida server` runs before it opens the database
  (`server.dbcheck`: header, length and permission checks, then `PRAGMA quick_check`).
- integrity_check: `PRAGMA integrity_check`, which also checks that every index
  matches its table (and so reads the results' primary-key index against the table).

Printed: the file's size, each figure in seconds (median of `--rounds`) and its ratio
to the read, and MB/s.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oodida.server.dbcheck import check_database  # noqa: E402
from oodida.server.store import Store  # noqa: E402
from oodida.wire.messages import AssignmentSpec, Result, WindowSpec  # noqa: E402


def build(path: Path, rows: int, vehicles: int = 10_000) -> None:
    store = Store(path)
    spec = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=5), iterations=0, on_board=["mean"])
    assignment = store.create_assignment(spec, [f"car-{i}" for i in range(vehicles)])
    value = {"SPEED": {"count": 50, "fsum": 3012.5, "min": 41.25, "max": 77.5, "m2": 1804.375,
                       "first": 1.5e9, "last": 1.5e9 + 4.9}}  # about what a vehicle's partial holds
    batch: list[tuple[Result, bool]] = []
    for n in range(rows):
        iteration, vehicle = divmod(n, vehicles)
        batch.append((Result(assignment=assignment, iteration=iteration + 1, vehicle=f"car-{vehicle}", ok=True,
                             code_hash="0" * 64, value=value, samples={"SPEED": 50}, elapsed=0.001), False))
        if len(batch) == 10_000:
            store.add_results(batch)
            batch = []
    if batch:
        store.add_results(batch)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_all(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass


def integrity_check(path: Path) -> None:
    db = sqlite3.connect(path)
    try:
        rows = db.execute("PRAGMA integrity_check(20)").fetchall()
    finally:
        db.close()
    assert rows == [("ok",)], rows


def timed(fn, path: Path, cold: bool) -> float:
    if cold:
        evict(path)
    start = time.perf_counter()
    fn(path)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="result rows (10,000 vehicles x iterations)")
    parser.add_argument("--dir", default=None, help="where to build the database (the server's kind of disk)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "server.sqlite3"
        start = time.perf_counter()
        build(path, args.rows)
        size = path.stat().st_size
        print(f"database: {args.rows:,} results, {size / 1e6:.0f} MB, built in {time.perf_counter() - start:.0f} s")
        print(f"{'':16} {'warm s':>8} {'x read':>7} {'MB/s':>7}   {'cold s':>8} {'x read':>7} {'MB/s':>7}")
        figures: dict[str, dict[bool, float]] = {}
        for name, fn in (("read", read_all), ("check_database", check_database),
                         ("integrity_check", integrity_check)):
            figures[name] = {}
            for cold in (False, True):
                if not cold:
                    read_all(path)  # warm the cache
                figures[name][cold] = statistics.median(timed(fn, path, cold) for _ in range(args.rounds))
        for name, by in figures.items():
            cells = []
            for cold in (False, True):
                t = by[cold]
                cells.append(f"{t:8.2f} {t / figures['read'][cold]:7.1f} {size / 1e6 / t:7.0f}")
            print(f"{name:16} {cells[0]}   {cells[1]}")


if __name__ == "__main__":
    main()
