"""How long one iteration takes end to end: server sends tasks, agents answer, server aggregates.

Run on demand, not as a test:

    .venv/bin/python bench/iteration_roundtrip.py [--agents 10 100] [--iterations N]

For each fleet size: one real server process (`oodida server`) and N real agents on
loopback, each agent with its own TCP connection and the real protocol. A process
per agent would not fit a small machine, so agents share processes
(bench/multi_agent.py: several `run_agent` in one asyncio loop); the output says how
many processes of how many agents.

Every agent replays the recorded RAV4 drive (can0, SPEED and STEER_ANGLE) from its
own offset as fast as it can, without looping. Once every agent reports its source
"ended" (all its data is buffered), one assignment runs many iterations of
`latest 5 s` with on-board count, mean, min, max and the fleet off-board step.

Round trip of an iteration = IterationReport.closed - IterationReport.started: the
server's wall clock from just before it sends the tasks to just after the off-board
step (the store's commit of the closed iteration is not in it). The wall time of the
whole assignment (first start to last close) is printed too; it also holds the gaps
between iterations (closing, storing, opening the next).

Baseline, in the same run after the fleet is stopped: the same computation in this
process with no network: the very windows the agents cut (each agent's config replayed
into its own store with the agent's code), `run_on_board` on each, `run_off_board` over
them, per iteration. The ratio round trip / baseline is what the network, the
protocol, the encoding, the store and asyncio cost.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oodida.agent.config import load_agent_config
from oodida.agent.main import build_agent
from oodida.analytics import registry
from oodida.analytics.arrays import from_wire, to_wire
from oodida.client.protocol import AnalystClient, RequestFailed
from oodida.core.logs import setup_logging
from oodida.testing import FleetError, LocalFleet, _die_with_parent
from oodida.wire.messages import AssignmentSpec, IterationReport, ResultsEnd, WindowSpec

HERE = Path(__file__).resolve().parent
SIGNALS = ["SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE"]
METHODS = ["count", "mean", "min", "max"]
WINDOW = WindowSpec(amount=5.0, unit="s", kind="latest")
DEFAULT_ITERATIONS = {10: 200, 100: 100}  # else 100


# --- the fleet --------------------------------------------------------------------------


@dataclass
class BenchFleet(LocalFleet):
    """A LocalFleet whose agents run several to a process (bench/multi_agent.py)."""

    processes: int = 2
    status_interval: float = 2.0  # the agent's default; LocalFleet writes 0.5
    agent_configs: list[Path] = field(default_factory=list)
    groups: list[list[str]] = field(default_factory=list)

    def write_agent_config(self, index: int, **source: Any) -> Path:
        path = super().write_agent_config(index, **source)
        text, n = re.subn(
            r"(?m)^status_interval = .*$", f"status_interval = {self.status_interval!r}", path.read_text()
        )
        if n != 1:
            raise FleetError(f"cannot set status_interval in {path}: LocalFleet's agent config changed shape")
        path.write_text(text)
        loaded = load_agent_config(path)  # fail here, not in a child, if the config is wrong
        assert loaded.server.status_interval == self.status_interval
        return path

    def start_agent_processes(self) -> None:
        self.agent_configs = [self.write_agent_config(i) for i in range(self.vehicles)]
        per = math.ceil(self.vehicles / self.processes)
        ids = self.vehicle_ids
        for p in range(self.processes):
            lo, hi = p * per, min((p + 1) * per, self.vehicles)
            if lo >= hi:
                break
            name = f"agents-{p + 1}"
            self.groups.append(ids[lo:hi])
            self.agents[name] = self._spawn_script(
                name,
                [str(HERE / "multi_agent.py"), *map(str, self.agent_configs[lo:hi])],
            )

    def _spawn_script(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        out = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OODIDA_TOKEN")}
        try:
            return subprocess.Popen(
                [sys.executable, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (as LocalFleet does)
                env=env,
            )
        finally:
            out.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Agents first, then the server. LocalFleet.stop signals all at once; an agent
        that loses the server in the same instant as it is told to stop can miss the
        stop (link.Channel.close swallows the cancellation) and lingers until SIGKILL."""
        server, self.server = self.server, None
        try:
            super().stop(timeout)
        finally:
            self.server = server
            self.agents, agents = {}, self.agents
            try:
                super().stop(timeout)
            finally:
                self.agents = agents

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU each process has used so far (Linux /proc; empty elsewhere)."""
        out = {}
        procs = {"server": self.server, **self.agents}
        for name, proc in procs.items():
            try:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, AttributeError):
                return {}
            out[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return out

    def _check_alive(self, vehicles: set[str] | None = None) -> None:
        super()._check_alive(None)  # self.agents holds host processes, not vehicles: check them all


def default_processes(agents: int) -> int:
    """2 processes for small fleets, up to 4 for large ones (25 agents each at 100)."""
    return min(agents, max(2, min(4, math.ceil(agents / 25))))


def offsets_for(agents: int) -> list[float]:
    """Varied offsets within the first 50 s of the 60 s drive (so a 5 s window always fits)."""
    return [round((i * 7.3) % 50.0, 3) for i in range(agents)]


# --- measuring ---------------------------------------------------------------------------


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "n": int(ms.size),
        "median": float(np.median(ms)),
        "p99": float(np.percentile(ms, 99)),
        "min": float(ms.min()),
        "max": float(ms.max()),
        "mean": float(ms.mean()),
    }


def fmt(s: dict[str, float]) -> str:
    return (
        f"median {s['median']:.2f} ms, p99 {s['p99']:.2f} ms "
        f"(min {s['min']:.2f}, max {s['max']:.2f}, mean {s['mean']:.2f}, n {s['n']})"
    )


async def wait_sources_ended(fleet: BenchFleet, client: AnalystClient, timeout: float) -> float:
    """Until every vehicle reports every source 'ended'; seconds waited."""
    started = time.monotonic()
    wanted = set(fleet.vehicle_ids)
    while True:
        fleet._check_alive()
        status = await client.status()
        ended: set[str] = set()
        for info in status.vehicles:
            if info.vehicle not in wanted or info.status is None:
                continue
            states = [s.state for s in info.status.sources]
            if "failed" in states:
                bad = [s for s in info.status.sources if s.state == "failed"]
                raise FleetError(f"{info.vehicle}: source failed: {bad[0].error}")
            if states and all(s == "ended" for s in states):
                ended.add(info.vehicle)
        if ended == wanted:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise FleetError(f"sources not ended within {timeout:g} s on {len(wanted - ended)} vehicles")
        await asyncio.sleep(0.5)


async def run_fleet(fleet: BenchFleet, iterations: int, deadline: float, say: Any) -> dict[str, Any]:
    t0 = time.monotonic()
    fleet.start_server()
    fleet.start_agent_processes()
    client = await fleet.client()
    try:
        await fleet.wait_connected(client, timeout=60.0 + fleet.vehicles)
        connected = time.monotonic() - t0
        filled = await wait_sources_ended(fleet, client, timeout=600.0)
        say(f"  {fleet.vehicles} agents connected in {connected:.1f} s; "
            f"every source ended (data buffered) {filled:.1f} s later")
        spec = AssignmentSpec(
            name=f"round trip {fleet.vehicles} agents",
            signals=SIGNALS,
            window=WINDOW,
            vehicles=fleet.vehicles,
            iterations=iterations,
            on_board=METHODS,
            deadline=deadline,
        )
        cpu_before = fleet.cpu_seconds()
        submit_at = time.monotonic()
        submitted = await client.submit(spec)
        # Poll for the end rather than follow the results: a follower makes the server
        # build and send a report during the next iteration, which would be measured.
        while True:
            fleet._check_alive()
            status = await client.status()
            info = next(a for a in status.assignments if a.assignment == submitted.assignment)
            if info.state != "running":
                break
            await asyncio.sleep(0.25)
        seen_done = time.monotonic() - submit_at
        cpu_after = fleet.cpu_seconds()
        cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_after if k in cpu_before}
        reports: list[IterationReport] = []
        end: ResultsEnd | None = None
        async for item in client.results(submitted.assignment):
            if isinstance(item, IterationReport):
                reports.append(item)
            else:
                end = item
        assert end is not None
        return {"reports": reports, "state": end.state, "reason": end.reason, "seen_done": seen_done, "cpu": cpu}
    finally:
        await client.close()


def baseline_windows(configs: list[Path]) -> dict[str, Any]:
    """Each agent's `latest 5 s` window, cut by the agent's own code from its own replay."""
    agents = [build_agent(load_agent_config(path)) for path in configs]
    try:
        for agent in agents:
            for pump in agent.pumps:
                pump.start()
        deadline = time.monotonic() + 600
        while any(p.state not in ("ended", "failed") for a in agents for p in a.pumps):
            if time.monotonic() > deadline:
                raise FleetError("baseline replay did not end within 600 s")
            time.sleep(0.05)
        failed = [p for a in agents for p in a.pumps if p.state == "failed"]
        if failed:
            raise FleetError(f"baseline replay failed: {failed[0].error}")
        out = {}
        for agent in agents:
            names = agent.runner.resolver.resolve(SIGNALS)
            out[agent.config.vehicle] = (agent.store, names)
        return out
    finally:
        for agent in agents:
            for pump in agent.pumps:
                pump.stop()


def run_baseline(stores: dict[str, Any], iterations: int) -> dict[str, Any]:
    windows = {v: store.latest(names, WINDOW).series for v, (store, names) in stores.items()}
    compute: list[float] = []
    with_cut: list[float] = []
    fleet_value: Any = None
    for _ in range(max(iterations, 50)):
        started = time.perf_counter()
        partials = {v: registry.run_on_board(METHODS, w, {}, None) for v, w in windows.items()}
        fleet_value, _ = registry.run_off_board(METHODS, partials, {}, None)
        compute.append(time.perf_counter() - started)
        started = time.perf_counter()
        cut = {v: store.latest(names, WINDOW).series for v, (store, names) in stores.items()}
        partials = {v: registry.run_on_board(METHODS, w, {}, None) for v, w in cut.items()}
        registry.run_off_board(METHODS, partials, {}, None)
        with_cut.append(time.perf_counter() - started)
    samples = {v: {k: len(s) for k, s in w.items()} for v, w in windows.items()}
    return {
        "compute": summary_ms(compute), "with_cut": summary_ms(with_cut), "fleet": to_wire(fleet_value),
        "samples": samples,
    }


def close_enough(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close_enough(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close_enough(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def bench_one(agents: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    iterations = args.iterations or DEFAULT_ITERATIONS.get(agents, 100)
    per = math.ceil(agents / (args.processes or default_processes(agents)))
    processes = math.ceil(agents / per)  # e.g. 10 agents asked in 4 processes: 4 of 3, 3, 3, 1
    fleet = BenchFleet(
        root / f"fleet-{agents}",
        vehicles=agents,
        speed=0.0,
        loop=False,
        offsets=offsets_for(agents),
        signals=SIGNALS,
        log_level=args.log_level,
        processes=processes,
        status_interval=args.status_interval,
    )
    say = print
    say(
        f"\n== {agents} agents: 1 server process, {processes} agent processes of up to {per} agents each "
        f"(bench/multi_agent.py: one asyncio loop per process, one TCP connection per agent), loopback"
    )
    say(
        f"  assignment: {iterations} iterations, window {WINDOW.kind} {WINDOW.amount:g} {WINDOW.unit}, "
        f"on-board {', '.join(METHODS)}, off-board fleet, deadline {args.deadline:g} s; logs in {fleet.workdir}"
    )
    try:
        run = asyncio.run(run_fleet(fleet, iterations, args.deadline, say))
    finally:
        fleet.stop()
    reports: list[IterationReport] = sorted(run["reports"], key=lambda r: r.iteration)
    statuses: dict[str, int] = {}
    for r in reports:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    if run["state"] != "done" or len(reports) != iterations or statuses.get("complete", 0) != iterations:
        raise FleetError(
            f"assignment ended {run['state']} ({run['reason']}) with {len(reports)} of {iterations} iterations, "
            f"statuses {statuses}; see {fleet.workdir}"
        )
    rt = summary_ms([r.closed - r.started for r in reports])
    wall = reports[-1].closed - reports[0].started
    gaps = summary_ms([b.started - a.closed for a, b in itertools.pairwise(reports)]) if len(reports) > 1 else None

    say(f"  computing the in-process baseline from the same {agents} agent configs ...")
    stores = baseline_windows(fleet.agent_configs)
    base = run_baseline(stores, iterations)
    fleet_ok = close_enough(from_wire(reports[-1].fleet), from_wire(base["fleet"]))
    remote_samples = {v: rep.samples for v, rep in reports[-1].vehicles.items()}
    samples_ok = remote_samples == base["samples"]

    ratio = rt["median"] / base["compute"]["median"]
    say(f"  round trip (closed - started):   {fmt(rt)}")
    say(
        f"  assignment wall time: {wall:.3f} s for {iterations} iterations, first start to last close "
        f"({wall / iterations * 1000:.2f} ms per iteration); submit to done seen by the client {run['seen_done']:.2f} s"
    )
    if run["cpu"]:
        server_cpu = run["cpu"].get("server", 0.0)
        agents_cpu = sum(v for k, v in run["cpu"].items() if k != "server")
        say(
            f"  CPU used from submit to done (incl. status polls and reports): server {server_cpu:.2f} s "
            f"({server_cpu / iterations * 1000:.1f} ms per iteration, "
            f"{server_cpu / run['seen_done']:.0%} of one core), "
            f"agent processes {agents_cpu:.2f} s ({agents_cpu / iterations * 1000:.1f} ms per iteration); "
            f"{os.cpu_count()} cores"
        )
    if gaps is not None:
        say(f"  gap between iterations (close -> next start): median {gaps['median']:.2f} ms, p99 {gaps['p99']:.2f} ms")
    say(f"  in-process baseline (on-board x{agents} + off-board): {fmt(base['compute'])}")
    say(f"  in-process baseline incl. cutting the windows:       {fmt(base['with_cut'])}")
    say(
        f"  check: baseline fleet result {'matches' if fleet_ok else 'DIFFERS FROM'} the server's; "
        f"per-vehicle sample counts {'match' if samples_ok else 'DIFFER'}"
    )
    return {
        "agents": agents,
        "processes": processes,
        "iterations": iterations,
        "rt": rt,
        "wall": wall,
        "base": base["compute"],
        "base_cut": base["with_cut"],
        "ratio": ratio,
        "checks_ok": fleet_ok and samples_ok,
    }


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[10, 100], help="fleet sizes (default 10 100)")
    parser.add_argument(
        "--iterations", type=int, help="iterations per assignment (default 200 for 10 agents, 100 otherwise)"
    )
    parser.add_argument("--processes", type=int, help="agent processes (default 2, up to 4 for large fleets)")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds per iteration (default 60)")
    parser.add_argument("--status-interval", type=float, default=2.0, help="agents' status period, s (default 2)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--workdir", help="keep configs, logs and databases here (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.agents) or (args.iterations is not None and args.iterations < 1):
        parser.error("--agents and --iterations must be positive")

    # SIGTERM ends this run like Ctrl-C: the finally blocks stop every process.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    setup_logging("error")  # the baseline builds agents here; their DBC warnings are known
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="oodida-bench-rt-"))
    print(
        f"iteration round trip on {platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()}), "
        f"agents' status every {args.status_interval:g} s, log level {args.log_level}"
    )
    results = []
    ok = False
    try:
        for agents in args.agents:
            results.append(bench_one(agents, args, root))
        ok = True
    except (FleetError, RequestFailed) as exc:
        print(f"iteration_roundtrip: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; every process was stopped", file=sys.stderr)
        return 130
    finally:
        if ok and not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
        elif not ok:
            print(f"(configs and logs kept in {root})", file=sys.stderr)
    print("\nsummary")
    for r in results:
        print(
            f"  round trip {r['agents']} agents ({r['processes']} agent processes): median {r['rt']['median']:.2f} ms, "
            f"p99 {r['rt']['p99']:.2f} ms; in-process baseline median {r['base']['median']:.3f} ms; "
            f"ratio {r['rt']['median']:.2f}/{r['base']['median']:.3f} = {r['ratio']:.1f}x; "
            f"wall {r['wall']:.2f} s for {r['iterations']} iterations"
        )
    return 0 if all(r["checks_ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
