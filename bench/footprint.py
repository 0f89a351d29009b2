"""Footprint: the agent's and its sandbox worker's memory, at rest and during assignments.

Run on demand, not as a test:  .venv/bin/python bench/footprint.py [--settle S] [--hold S]

One real server and one real agent process (oodida/fleet.py's LocalFleet, 1 vehicle,
loopback), the agent replaying the recorded RAV4 drive in real time, in a loop, every
DBC signal. RSS and, where the kernel has /proc/<pid>/smaps_rollup, PSS (shared pages
split among the processes that map them) of: the agent process, its sandbox worker
(pid from the agent's status, `vehicles[i].status.sandbox.pid`; none until a module
needs it), the server. Phases:

  rest      connected, source running, no assignment (after --settle s)
  built-in  an assignment of on-board count/mean/min/max over `latest 5 s` windows,
            iterations back to back, for --hold s (the highest reading counts)
  module    examples/speeding.py on board (in the sandbox) and off board, `next 3 s`
            windows, for --hold s
  after     both assignments cancelled, --settle s later

The agent's store grows with the drive (retention 300 s by default), so "rest" holds
--settle s of signals and later phases a little more: the figures are for a store a
minute or so full, not a full one. Baseline, in the same run: a bare
`python -c "import numpy, can, cantools"` process; agent / baseline is what our code
and its data add over the libraries it imports.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This checkout's code, not whatever copy of oodida the venv has installed.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# and for the server, agent and baseline processes, wherever this is started from
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from oodida.client.protocol import AnalystClient, RequestFailed
from oodida.testing import (  # after the path is set
    FleetError,
    LocalFleet,
    _die_with_parent,
)
from oodida.wire.messages import AssignmentSpec, ModuleSource, WindowSpec

SPEEDING = ROOT / "examples" / "speeding.py"
BASELINE_CODE = "import sys, numpy, can, cantools; print('ready', flush=True); sys.stdin.read()"


def memory_kb(pid: int | None) -> tuple[int, int | None] | None:
    """(RSS, PSS) in kB; PSS None without smaps_rollup; None if the process is gone."""
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    pss = None
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
                break
    except OSError:
        pass
    return rss, pss


def children(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc/<pid>/task/*/children)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def baseline() -> tuple[int, int | None]:
    proc = subprocess.Popen(
        [sys.executable, "-c", BASELINE_CODE],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=_die_with_parent,  # noqa: PLW1509
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise FleetError("the baseline process did not start")
        measured = memory_kb(proc.pid)
        assert measured is not None
        return measured
    finally:
        proc.kill()
        proc.wait()


class Sampler:
    """The highest RSS (and its PSS) seen per process over a phase."""

    def __init__(self) -> None:
        self.peak: dict[str, tuple[int, int | None]] = {}
        self.pids: dict[str, int | None] = {}

    def sample(self, pids: dict[str, int | None]) -> None:
        for name, pid in pids.items():
            self.pids[name] = self.pids.get(name) or pid
            m = memory_kb(pid)
            if m is not None and (name not in self.peak or m[0] > self.peak[name][0]):
                self.peak[name] = m


async def pids_of(fleet: LocalFleet, client: AnalystClient) -> dict[str, int | None]:
    status = await client.status()
    info = next(v for v in status.vehicles if v.vehicle == fleet.vehicle_ids[0])
    assert info.status is not None
    agent = fleet.agents[fleet.vehicle_ids[0]].pid
    if info.status.pid != agent:
        raise FleetError(f"the agent reports pid {info.status.pid}, but its process is {agent}")
    worker = info.status.sandbox.pid if info.status.sandbox is not None else None
    if worker is not None and worker not in children(agent):
        raise FleetError(f"the sandbox worker {worker} is not a child of the agent {agent}")
    assert fleet.server is not None
    return {"agent": agent, "worker": worker, "server": fleet.server.pid}


async def hold(fleet: LocalFleet, client: AnalystClient, seconds: float, every: float = 0.25) -> Sampler:
    sampler = Sampler()
    end = time.monotonic() + seconds
    while True:
        fleet._check_alive()
        sampler.sample(await pids_of(fleet, client))
        if time.monotonic() >= end:
            return sampler
        await asyncio.sleep(every)


async def check_running(client: AnalystClient, assignment: int, name: str) -> int:
    """Iterations completed so far; fails if the assignment is not running or none completed."""
    status = await client.status()
    info = next(a for a in status.assignments if a.assignment == assignment)
    if info.state != "running":
        raise FleetError(f"the {name} assignment is {info.state}, not running ({info.reason})")
    if info.completed < 1:
        raise FleetError(f"the {name} assignment completed no iteration while it was measured")
    return info.completed


async def run(fleet: LocalFleet, settle: float, hold_s: float) -> tuple[list[tuple[str, Sampler]], dict[str, int]]:
    phases: list[tuple[str, Sampler]] = []
    completed: dict[str, int] = {}
    fleet.start()
    client = await fleet.client()
    try:
        await fleet.wait_connected(client, timeout=60.0)
        await asyncio.sleep(settle)
        phases.append(("rest", await hold(fleet, client, 1.0)))

        builtin = await client.submit(AssignmentSpec(
            name="footprint built-in", signals=["SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE"],
            window=WindowSpec(amount=5.0, unit="s", kind="latest"), vehicles=1, iterations=0,
            on_board=["count", "mean", "min", "max"],
        ))
        phases.append(("built-in", await hold(fleet, client, hold_s)))
        completed["built-in"] = await check_running(client, builtin.assignment, "built-in")
        await client.cancel(builtin.assignment)

        module = ModuleSource(name="speeding.py", source=SPEEDING.read_text())
        speeding = await client.submit(AssignmentSpec(
            name="footprint module", signals=["SPEED"], window=WindowSpec(amount=3.0, unit="s", kind="next"),
            vehicles=1, iterations=0, on_board_module=module, off_board_module=module, params={"limit": 65.0},
            deadline=30.0,
        ))
        phases.append(("module", await hold(fleet, client, hold_s)))
        completed["module"] = await check_running(client, speeding.assignment, "module")
        await client.cancel(speeding.assignment)

        await asyncio.sleep(settle)
        phases.append(("after", await hold(fleet, client, 1.0)))
        return phases, completed
    finally:
        await client.close()


def mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before 'rest' and 'after' (default 5)")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds each assignment is sampled (default 10)")
    parser.add_argument("--workdir", help="keep configs and logs here (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="oodida-bench-fp-"))
    print(f"footprint on {platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()}); "
          f"PSS {'from smaps_rollup' if Path('/proc/self/smaps_rollup').exists() else 'not available'}")
    base = baseline()
    print(f"baseline: python -c 'import numpy, can, cantools': RSS {mb(base[0])} MB, PSS {mb(base[1])} MB")
    fleet = LocalFleet(root, vehicles=1, speed=1.0, loop=True, log_level="warning")
    ok = False
    try:
        phases, completed = asyncio.run(run(fleet, args.settle, args.hold))
        ok = True
    except (FleetError, RequestFailed) as exc:
        print(f"footprint: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; every process was stopped", file=sys.stderr)
        return 130
    finally:
        fleet.stop()
        if ok and not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
        elif not ok:
            print(f"(configs and logs kept in {root})", file=sys.stderr)

    print(f"\n{'phase':<9} {'agent RSS':>9} {'PSS':>7} {'worker RSS':>10} {'PSS':>7} {'server RSS':>10} {'PSS':>7}"
          f"  (MB; highest reading of the phase)")
    for name, s in phases:
        cells = []
        for proc in ("agent", "worker", "server"):
            m = s.peak.get(proc)
            cells += [mb(m[0]) if m else "-", mb(m[1]) if m else "-"]
        print(f"{name:<9} {cells[0]:>9} {cells[1]:>7} {cells[2]:>10} {cells[3]:>7} {cells[4]:>10} {cells[5]:>7}")
    workers = {s.pids.get("worker") for _, s in phases} - {None}
    print(f"sandbox worker pid(s) seen: {sorted(workers) or 'none'}; iterations completed while measured: "
          + ", ".join(f"{k} {v}" for k, v in completed.items()))
    print("\nratios against the baseline (RSS)")
    for name, s in phases:
        agent = s.peak["agent"][0]
        worker = s.peak.get("worker")
        both = agent + (worker[0] if worker else 0)
        print(
            f"  {name:<9} agent x{agent / base[0]:.2f} (+{mb(agent - base[0])} MB)"
            + (f"; agent + worker {mb(both)} MB, x{both / base[0]:.2f}" if worker else "; no worker")
            + (f"; agent + worker PSS {mb(s.peak['agent'][1] + worker[1])} MB"
               if worker and worker[1] is not None and s.peak["agent"][1] is not None else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
