"""What resuming costs: the per-iteration write that makes an iteration resumable,
and the time a restarted server takes to rebuild a running assignment.

Run on demand, not as a test:

    .venv/bin/python bench/resume.py [--vehicles 10 1000 10000] [--iterations 200]

Per fleet size, on a real SQLite file (WAL, as the server opens it):

- open: `Store.begin_iteration` (the iteration row with its task state, the version
  each vehicle's task named, and the assignment's versions, in one transaction)
  against the baseline `Store.open_iteration` (the bare row the server wrote before
  resume), both measured in this run, per iteration; the ratio is what resumability
  costs at each iteration boundary. The versions are one on-board module for every
  vehicle and 1% of the fleet on a second version (a partial deploy), so the saved
  maps carry exceptions, not only the common hash.
- rebuild: `server.resume.rebuild` of an assignment whose open iteration already holds
  a result from every vehicle but one (the worst case: every stored result is read
  back and becomes an answer), against the baseline of reading the same results with
  `Store.results` alone. The difference is what the runner itself costs to rebuild.

On the development machine (2 shared cores, busy), `--iterations 100`, after the
scale branch's merge:

    vehicles | open (before resume) | begin (resumable) | ratio | read results |   rebuild | ratio
          10 |             0.042 ms |          0.167 ms |   4.0 |       0.2 ms |    0.8 ms |   3.3
        1000 |             0.033 ms |          0.650 ms |  19.4 |      25.3 ms |   26.9 ms |   1.1
       10000 |             0.032 ms |          5.686 ms | 175.3 |     329.2 ms |  311.2 ms |   0.9

The resumable open grows with the fleet (about 0.5 us per vehicle: the version each
task names, compacted, and the versions' snapshot), 6 to 10 ms per iteration at 10,000
vehicles (two runs), beside the 10,000 tasks the iteration sends and the 3.2 s of
server CPU an iteration of 10,000 costs (docs/performance.md, fleet scale). A rebuild costs about what
reading the open iteration's results costs (the two alternate, so caching blurs them).
Before `Iteration.add` looked vehicles up in a set (the scale branch), a rebuild took
2.4 s at 10,000 vehicles.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oodida.sandbox.supervisor import source_hash
from oodida.server.resume import rebuild
from oodida.server.runner import AssignmentRunner
from oodida.server.store import Store
from oodida.wire.messages import AssignmentSpec, Message, ModuleSource, Result, WindowSpec

V1 = ModuleSource(name="v1.py", source="def on_board(window, params, state):\n    return 1\n")
V2 = ModuleSource(name="v2.py", source="def on_board(window, params, state):\n    return 2\n")


class NoFleet:
    async def send_to(self, vehicle: str, message: Message) -> bool:
        return False

    async def send_many(self, messages: Any) -> list[str]:
        return list(messages)

    async def cancel_tasks(self, vehicles: list[str], assignment: int) -> None:
        return None

    def publish(self, assignment: int, event: tuple[str, Any]) -> None:
        return None


def setup(store: Store, vehicles: list[str]) -> tuple[int, AssignmentRunner]:
    spec = AssignmentSpec(
        signals=["SPEED"], window=WindowSpec(amount=5.0, kind="latest"), iterations=0, on_board_module=V1
    )
    assignment = store.create_assignment(spec, vehicles)
    for module in (V1, V2):
        store.add_module(source_hash(module.source), module.name, module.source)
    runner = AssignmentRunner(NoFleet(), store, assignment, spec, vehicles)
    runner.versions.deploy_on_board(source_hash(V2.source), V2, vehicles[: max(1, len(vehicles) // 100)])
    return assignment, runner


def per_iteration(
    store: Store, runner: AssignmentRunner, assignment: int, first: int, count: int, resumable: bool
) -> list[float]:
    state = {"centroids": [[float(i), float(i) * 2.0] for i in range(8)]}
    times = []
    for number in range(first, first + count):
        began = time.perf_counter()
        if resumable:
            from oodida.server.versions import compact_map

            hashes = {v: runner.versions.target.get(v) for v in runner.vehicles}
            store.begin_iteration(
                assignment, number, time.time(), task_state=state, task_hashes=compact_map(hashes, runner.vehicles),
                off_board_hash=None, versions=runner.versions_json(),
            )
        else:
            store.open_iteration(assignment, number, time.time())
        times.append(time.perf_counter() - began)
    return times


def bench(vehicles: int, iterations: int, root: Path) -> dict[str, float]:
    names = [f"car-{i:05d}" for i in range(vehicles)]
    store = Store(root / f"resume-{vehicles}.sqlite3")
    try:
        assignment, runner = setup(store, names)
        # alternate blocks of the two, so a busy moment of the machine hits both alike
        old: list[float] = []
        new: list[float] = []
        block = max(1, iterations // 10)
        number = 1
        while len(old) < iterations:
            old += per_iteration(store, runner, assignment, number, block, resumable=False)
            number += block
            new += per_iteration(store, runner, assignment, number, block, resumable=True)
            number += block
        for n in range(1, number - 1):  # close them all but the last: it is the open one
            store.db.execute("UPDATE iterations SET status = 'complete' WHERE assignment = ? AND iteration = ?",
                             (assignment, n))
        last = number - 1
        store.db.execute("DELETE FROM iterations WHERE assignment = ? AND status = 'open' AND iteration != ?",
                         (assignment, last))
        code = source_hash(V1.source)
        store.db.execute("BEGIN")
        for vehicle in names[:-1]:
            store.add_result(Result(assignment=assignment, iteration=last, vehicle=vehicle, ok=True, code_hash=code,
                                    value={"mean": {"SPEED": {"n": 100, "sum": 1234.5}}}, samples={"SPEED": 100}))
        store.db.execute("COMMIT")
        reads, rebuilds = [], []
        for _ in range(5):
            began = time.perf_counter()
            store.results(assignment, last)
            reads.append(time.perf_counter() - began)
            began = time.perf_counter()
            resumed = rebuild(NoFleet(), store, None, assignment)
            rebuilds.append(time.perf_counter() - began)
            assert resumed.runner.reopen is not None and len(resumed.runner.reopen.answers) == vehicles - 1
        return {
            "open_ms": statistics.median(old) * 1e3,
            "begin_ms": statistics.median(new) * 1e3,
            "read_ms": statistics.median(reads) * 1e3,
            "rebuild_ms": statistics.median(rebuilds) * 1e3,
        }
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vehicles", type=int, nargs="+", default=[10, 1000, 10000])
    parser.add_argument("--iterations", type=int, default=200, help="iterations opened per kind (default 200)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oodida-bench-resume-") as tmp:
        print(f"{'vehicles':>8} | {'open (before resume)':>20} | {'begin (resumable)':>17} | {'ratio':>5} |"
              f" {'read results':>12} | {'rebuild':>9} | {'ratio':>5}")
        for vehicles in args.vehicles:
            r = bench(vehicles, args.iterations, Path(tmp))
            print(f"{vehicles:>8} | {r['open_ms']:>17.3f} ms | {r['begin_ms']:>14.3f} ms | "
                  f"{r['begin_ms'] / r['open_ms']:>5.1f} |"
                  f" {r['read_ms']:>9.1f} ms | {r['rebuild_ms']:>6.1f} ms | {r['rebuild_ms'] / r['read_ms']:>5.1f}")


if __name__ == "__main__":
    main()
