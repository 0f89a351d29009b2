"""Active-code replacement: from `deploy` to the last vehicle's acknowledgement, against
getting the same new code running by restarting the agents.

Run on demand, not as a test:

    .venv/bin/python bench/deploy_latency.py [--agents 10 100 1000] [--deploys 30] [--restarts N]

(about 8 minutes on 2 cores, most of it starting and restarting 1,000 agents)

For each fleet size: one real server process (`oodida server`) and N real agents on
loopback, each with its own TCP connection and the real protocol, several to a
process (bench/multi_agent.py, as in bench/iteration_roundtrip.py). Below
`--share-sandbox-from` agents (default 1000) every agent has its own sandbox worker,
as on a vehicle; from there on the agents of a process share one worker
(multi_agent.py --share-sandbox), since a worker per agent would not fit the
machine: each agent still checks, loads and acknowledges every version itself over
its own connection, but a version is compiled once per worker. The output says,
beside the figures, how many processes, agents per process and sandbox workers
there were.

Every agent replays the tail of the recorded RAV4 drive (can0, SPEED; 1.5 to 2.5 s
of it, as fast as it can, once), so it holds real data. Then one assignment runs,
the deploys' target: the on-board module below (its `VERSION` changes with every
deploy, so every worker really compiles and loads each one) over the `latest 1 s`
of SPEED, iterations until cancelled. It also names one vehicle that never connects
(`pacer`), so its iteration stays open (deadline 1 h): the assignment is running
and every agent holds its module, but the fleet is otherwise idle.

Deploy latency: the wall time in this process from just before `client.deploy(...)`
to its `DeployEnd`, quorum all; every `DeployEnd` must be complete with all N
vehicles acknowledged. A short random pause (50 to 250 ms) goes before each. Each
measured phase starts once the fleet is quiet (worker start-ups, replays done).
Measured (1) with the fleet otherwise idle, the headline figure; and, for fleets up
to `--busy-up-to` agents (default 100), (2) under load, while a second assignment
(the same kind of module, no pacer) runs its iterations back to back on every
vehicle. (At 1,000 agents on 2 cores that load saturates the server, about one
iteration per second, and deploys then wait behind its backlog for seconds.) Printed with
each: `DeployEnd.elapsed` (the server's own figure, from accepting the deploy), the
agents' `ModuleAck.elapsed` (received to acknowledged, per vehicle and deploy, from
the agents' logs), and the CPU the processes used per deploy (server with its
sandbox worker, agent processes, their sandbox workers, this client): on a machine
with few cores the CPU of N vehicles is a floor under the wall time.

Baseline, in the same run on the same fleet (idle, as in (1)): the same new code
brought in by a restart. Stop every agent process (SIGTERM, wait until they exited
and the server saw them go), deploy a new version to the offline fleet (the server
keeps it as each vehicle's target and sends it when the vehicle connects), start
the agent processes again, and wait for that deploy's `DeployEnd`: every agent
started, reconnected and acknowledged the new version in its fresh sandbox worker.
Timed from the SIGTERM; `--restarts` times (default 3, and 1 from 1,000 agents,
where one takes about two minutes here). The ratio restart / deploy (idle medians)
is printed.
Both figures hold N vehicles' work on this machine's cores, where a real fleet has
a CPU per vehicle: little for a deploy, much for a restart (every agent process
starts an interpreter and parses the log and the DBC, every worker starts one too).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iteration_roundtrip import (
    BenchFleet,
    default_processes,
    fmt,
    summary_ms,
    wait_sources_ended,
)

from oodida.client.protocol import AnalystClient, RequestFailed
from oodida.core.logs import setup_logging
from oodida.testing import FleetError, stop_processes
from oodida.wire.messages import (
    AssignmentSpec,
    DeployEnd,
    Deploying,
    DeployProgress,
    ModuleSource,
    WindowSpec,
)

SIGNALS = ["SPEED"]
WINDOW = WindowSpec(amount=1.0, unit="s", kind="latest")
MODULE = '''"""bench/deploy_latency.py's module: its version and the window's mean speed."""

VERSION = {version}


def on_board(window, params, state):
    speed = window["SPEED"].v
    return {{"version": VERSION, "samples": len(speed), "mean": float(speed.mean()) if len(speed) else None}}
'''
BIG = 1000  # from here: one sandbox worker per process, one restart by default
PACER = "pacer"  # named by the target assignment, has a credential, never connects: its iteration stays open
TARGET_P99_MS = 50.0  # the aim at 100 agents
LOADED = re.compile(r"on-board module deploy_bench\.py version ([0-9a-f]{12}) loaded in ([0-9.]+) ms")


def module(version: int, name: str = "deploy_bench.py") -> ModuleSource:
    return ModuleSource(name=name, source=MODULE.format(version=version))


def processes_for(agents: int) -> int:
    """As iteration_roundtrip up to 100 agents (25 per process at 100); 125 per process
    beyond, up to 8 processes."""
    return default_processes(agents) if agents <= 100 else min(8, math.ceil(agents / 125))


def restarts_for(agents: int, asked: int | None) -> int:
    return asked if asked is not None else (3 if agents < BIG else 1)


def tail_offsets(agents: int) -> list[float]:
    """Offsets into the 60 s drive that leave 1.5 to 2.5 s of it to replay."""
    return [round(57.5 + (i * 0.173) % 1.0, 3) for i in range(agents)]


# --- the fleet --------------------------------------------------------------------------


@dataclass
class DeployFleet(BenchFleet):
    """A BenchFleet whose agent processes can share a sandbox worker and be restarted."""

    share_sandbox: bool = False
    commands: dict[str, list[str]] = field(default_factory=dict)

    def _spawn_script(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        if name not in self.commands:
            script, *configs = args
            self.commands[name] = [script, *(["--share-sandbox"] if self.share_sandbox else []), *configs]
        return super()._spawn_script(name, self.commands[name])

    def stop_agents(self, timeout: float = 30.0) -> None:
        """SIGTERM every agent process at once; SIGKILL any that lingers; reaped."""
        stop_processes(list(self.agents.values()), timeout)
        bad = {name: p.returncode for name, p in self.agents.items() if p.returncode != 0}
        if bad:
            raise FleetError(f"agent processes did not stop cleanly: {bad}; see {self.workdir}")

    def start_agents_again(self) -> None:
        for name in list(self.agents):
            self.agents[name] = self._spawn_script(name, self.commands[name])

    def tree_cpu(self) -> dict[str, float]:
        """CPU seconds used so far (Linux /proc): the server with its children (its
        sandbox worker), the agent processes, and their children (sandbox workers).
        A process that exited is no longer counted."""
        tick = os.sysconf("SC_CLK_TCK")
        procs: dict[int, tuple[int, float]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            procs[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
        server = self.server.pid if self.server is not None else -1
        agents = {p.pid for p in self.agents.values()}
        out = {"server": 0.0, "agents": 0.0, "workers": 0.0}
        for pid, (ppid, cpu) in procs.items():
            if pid == server or ppid == server:
                out["server"] += cpu
            elif pid in agents:
                out["agents"] += cpu
            elif ppid in agents:
                out["workers"] += cpu
        return out


def layout(processes: int, per: int, shared: bool, agents: int) -> str:
    if shared:
        workers = (
            f"{processes} sandbox workers (one per process, shared by its agents: a version is compiled once per "
            "process, each agent still checks, loads and acknowledges it)"
        )
    else:
        workers = f"{agents} sandbox workers (one per agent)"
    return f"{processes} agent processes x {per} agents, {workers}"


# --- measuring ---------------------------------------------------------------------------


async def deploy_once(
    client: AnalystClient, assignment: int, vehicles: list[str], source: ModuleSource, timeout: float,
    on_deploying: Any = None,
) -> dict[str, Any]:
    """One deploy to every vehicle, quorum all; fails unless every vehicle acknowledged."""
    n = len(vehicles)
    progress: list[float] = []
    end: DeployEnd | None = None
    accepted = math.nan
    started = time.perf_counter()
    async for item in client.deploy(assignment=assignment, side="on_board", module=source, quorum=n, timeout=timeout):
        if isinstance(item, Deploying):
            accepted = time.perf_counter() - started
            if on_deploying is not None:
                on_deploying(item)
        elif isinstance(item, DeployProgress):
            progress.extend(a.elapsed for a in item.answers)
        else:
            end = item
    wall = time.perf_counter() - started
    assert end is not None
    if not end.complete or set(end.acked) != set(vehicles) or end.refused:
        refused = "; ".join(f"{v}: {why}" for v, why in list(end.refused.items())[:3])
        raise FleetError(
            f"deploy of {end.code_hash[:12]} incomplete after {wall:.1f} s: {len(end.acked)} of {n} acknowledged, "
            f"{len(end.refused)} refused{' (' + refused + ')' if refused else ''}, waiting for {end.waiting[:5]}"
        )
    return {"wall": wall, "server": end.elapsed, "accepted": accepted, "hash": end.code_hash,
            "first_ack": min(progress)}


async def deploy_series(
    fleet: DeployFleet, client: AnalystClient, assignment: int, versions: Any, count: int, timeout: float,
    background: float = 0.0,
) -> dict[str, Any]:
    """`count` deploys of new versions, a short random pause before each; the CPU every
    part of the fleet used per deploy, and what `background` (cores) makes of it."""
    rng = random.Random(count * fleet.vehicles)
    deploys = []
    cpu_before, client_before, started = fleet.tree_cpu(), time.process_time(), time.monotonic()
    for _ in range(count):
        fleet._check_alive()
        await asyncio.sleep(rng.uniform(0.05, 0.25))
        deploys.append(await deploy_once(client, assignment, fleet.vehicle_ids, module(next(versions)), timeout))
    cpu_after = fleet.tree_cpu()
    cpu = {k: (cpu_after[k] - cpu_before[k]) / count for k in cpu_after}
    cpu["client"] = (time.process_time() - client_before) / count
    return {"deploys": deploys, "cpu": cpu, "background": background * (time.monotonic() - started) / count}


async def wait_quiet(fleet: DeployFleet, below: float, timeout: float = 180.0) -> float:
    """Until the fleet's processes use less than `below` of a core over a second (worker
    start-ups and replays done); the cores they used in that last second."""
    started = time.monotonic()
    last = sum(fleet.tree_cpu().values())
    while True:
        await asyncio.sleep(1.0)
        fleet._check_alive()
        now = sum(fleet.tree_cpu().values())
        if 0 <= now - last < below:
            return now - last
        if time.monotonic() - started > timeout:
            raise FleetError(f"the fleet still uses {now - last:.2f} cores after {timeout:g} s")
        last = now


async def wait_gone(client: AnalystClient, vehicles: list[str], timeout: float = 30.0) -> None:
    """Until the server has seen every one of `vehicles` disconnect."""
    wanted = set(vehicles)
    deadline = time.monotonic() + timeout
    while True:
        status = await client.status()
        if not wanted & {v.vehicle for v in status.vehicles}:
            return
        if time.monotonic() > deadline:
            raise FleetError(f"the server still lists stopped vehicles after {timeout:g} s")
        await asyncio.sleep(0.02)


async def assignment_info(client: AnalystClient, assignment: int) -> Any:
    status = await client.status()
    return next(a for a in status.assignments if a.assignment == assignment)


async def restart_once(
    fleet: DeployFleet, client: AnalystClient, assignment: int, version: int, timeout: float
) -> dict[str, Any]:
    """Stop every agent process, deploy a new version to the offline fleet, start them
    again; seconds from the SIGTERM until every agent acknowledged it."""
    vehicles = fleet.vehicle_ids
    t0 = time.perf_counter()
    fleet.stop_agents()
    exited = time.perf_counter() - t0
    await wait_gone(client, vehicles)
    gone = time.perf_counter() - t0
    marks: dict[str, float] = {}

    def start(deploying: Deploying) -> None:
        if deploying.vehicles:
            raise FleetError(f"vehicles still connected after the stop: {deploying.vehicles[:5]}")
        fleet.start_agents_again()
        marks["started"] = time.perf_counter() - t0

    d = await deploy_once(client, assignment, vehicles, module(version), timeout, on_deploying=start)
    total = time.perf_counter() - t0
    cpu = fleet.tree_cpu()  # the fresh processes' whole lives so far
    return {"total": total, "exited": exited, "gone": gone, "started": marks["started"],
            "first_ack": gone + d["first_ack"], "cpu_agents": cpu["agents"], "cpu_workers": cpu["workers"]}


async def run_fleet(fleet: DeployFleet, args: argparse.Namespace, say: Any) -> dict[str, Any]:
    n = fleet.vehicles
    timeout = 60.0 + n * 0.2
    quiet = args.quiet_below
    t0 = time.monotonic()
    fleet.start_server()
    fleet.start_agent_processes()
    client = await fleet.client()
    try:
        await fleet.wait_connected(client, timeout=60.0 + n)
        connected = time.monotonic() - t0
        filled = await wait_sources_ended(fleet, client, timeout=600.0)
        say(f"  {n} agents connected in {connected:.1f} s; every source ended (data buffered) {filled:.1f} s later")
        versions = iter(range(1, 1 << 30))
        target = await client.submit(AssignmentSpec(
            name=f"deploy target, {n} agents",
            signals=SIGNALS,
            window=WINDOW,
            vehicles=[*fleet.vehicle_ids, PACER],
            iterations=0,
            on_board_module=module(next(versions)),
            off_board="none",
            deadline=3600.0,
        ))
        a = target.assignment
        for _ in range(2):  # warm-up, not measured: the submit's load (workers start), one deploy after it
            await deploy_once(client, a, fleet.vehicle_ids, module(next(versions)), timeout=600.0)
        quiet_since = time.monotonic()
        background = await wait_quiet(fleet, quiet)
        say(
            f"  target assignment {a} running, every agent holds its module; fleet quiet after "
            f"{time.monotonic() - quiet_since:.1f} s more (then using {background:.2f} cores: status reports)"
        )
        idle = await deploy_series(fleet, client, a, versions, args.deploys, timeout, background)
        busy = None
        if n <= args.busy_up_to:
            load = await client.submit(AssignmentSpec(
                name=f"load, {n} agents",
                signals=SIGNALS,
                window=WINDOW,
                iterations=0,
                on_board_module=module(0, "deploy_bench_load.py"),
                off_board="none",
                deadline=600.0,
            ))
            while (await assignment_info(client, load.assignment)).completed < 2:
                fleet._check_alive()
                await asyncio.sleep(0.1)
            before = await assignment_info(client, load.assignment)
            started = time.monotonic()
            busy = await deploy_series(fleet, client, a, versions, args.deploys, timeout)
            after = await assignment_info(client, load.assignment)
            busy["rate"] = (after.completed - before.completed) / (time.monotonic() - started)
            await client.cancel(load.assignment)
            # the server's state: polled, nothing here to await
            while (await assignment_info(client, load.assignment)).state == "running":  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        restarts = []
        for _ in range(restarts_for(n, args.restarts)):
            await wait_quiet(fleet, quiet)
            restarts.append(await restart_once(fleet, client, a, next(versions), timeout=300.0 + n))
            await wait_sources_ended(fleet, client, timeout=600.0)
        await client.cancel(a)
        return {"idle": idle, "busy": busy, "restarts": restarts}
    finally:
        await client.close()


def agent_load_times(fleet: DeployFleet, hashes: set[str]) -> list[float]:
    """Each agent's `ModuleAck.elapsed` (as it logs it) for the deploys of `hashes`."""
    out = []
    for name in fleet.agents:
        for m in LOADED.finditer((fleet.workdir / f"{name}.log").read_text(errors="replace")):
            if m.group(1) in hashes:
                out.append(float(m.group(2)) / 1000.0)
    return out


def report_series(fleet: DeployFleet, series: dict[str, Any], say: Any) -> dict[str, Any]:
    deploys = series["deploys"]
    wall = summary_ms([d["wall"] for d in deploys])
    server = summary_ms([d["server"] for d in deploys])
    accepted = summary_ms([d["accepted"] for d in deploys])
    first = summary_ms([d["first_ack"] for d in deploys])
    loads = agent_load_times(fleet, {d["hash"][:12] for d in deploys})
    say(f"    deploy -> last ack (client wall):  {fmt(wall)}")
    say(f"    server side (DeployEnd.elapsed):   {fmt(server)}")
    say(f"      client sees Deploying after median {accepted['median']:.2f} ms (accepted: checked, compiled in the "
        f"server's sandbox, stored); first ack median {first['median']:.2f} ms after acceptance")
    if loads:
        expected = fleet.vehicles * len(deploys)
        missing = "" if len(loads) == expected else f" (found {len(loads)} of {expected} in the agents' logs)"
        say(f"    agent side (ModuleAck.elapsed, per vehicle and deploy): {fmt(summary_ms(loads))}{missing}")
    if "rate" not in series:  # under load, the load's CPU would swamp the deploys'
        cpu = series["cpu"]
        total = sum(cpu.values()) - series["background"]
        cores = os.cpu_count() or 1
        n = fleet.vehicles

        def part(name: str, key: str) -> str:
            return f"{name} {cpu[key] * 1000:.1f} ms ({cpu[key] * 1e6 / n:.0f} us per vehicle)"

        say(
            f"    CPU per deploy: {part('server with its sandbox worker', 'server')}, "
            f"{part('agent processes', 'agents')}, "
            f"{part('their sandbox workers', 'workers')}, {part('client', 'client')}; less "
            f"{series['background'] * 1000:.1f} ms of background (status reports): {total * 1000:.1f} ms in all, "
            f"so at least {total * 1000 / cores:.1f} ms of wall on {cores} cores"
        )
    return {"wall": wall, "server": server}


def bench_one(agents: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    per = math.ceil(agents / (args.processes or processes_for(agents)))
    processes = math.ceil(agents / per)
    shared = agents >= args.share_sandbox_from
    fleet = DeployFleet(
        root / f"fleet-{agents}",
        vehicles=agents,
        speed=0.0,
        loop=False,
        offsets=tail_offsets(agents),
        signals=SIGNALS,
        log_level=args.log_level,
        processes=processes,
        status_interval=args.status_interval,
        share_sandbox=shared,
        absent_vehicles=[PACER],
    )
    where = layout(processes, per, shared, agents)
    say = print
    say(f"\n== {agents} agents: 1 server process, {where}; loopback, one TCP connection per agent; "
        f"logs in {fleet.workdir}")
    try:
        run = asyncio.run(run_fleet(fleet, args, say))
    finally:
        fleet.stop()
    say(f"  {args.deploys} deploys into the running assignment, fleet otherwise idle [{where}]:")
    idle = report_series(fleet, run["idle"], say)
    busy = None
    if run["busy"] is not None:
        say(
            f"  {args.deploys} deploys while a second assignment runs back to back on every agent "
            f"({run['busy']['rate']:.1f} iterations per s) [{where}]:"
        )
        busy = report_series(fleet, run["busy"], say)
    restarts = run["restarts"]
    restart = summary_ms([r["total"] for r in restarts]) if restarts else None
    if restart is not None:
        def med(key: str) -> float:
            return statistics.median(r[key] for r in restarts)

        say(
            f"  restart baseline (SIGTERM, exit, start, reconnect, new version acked) [{where}]: "
            f"median {restart['median'] / 1000:.2f} s, max {restart['max'] / 1000:.2f} s (n {restart['n']})"
        )
        say(
            f"    from the SIGTERM (medians): processes exited {med('exited'):.2f} s, the server saw them go "
            f"{med('gone'):.2f} s, started again {med('started'):.2f} s, first ack {med('first_ack'):.2f} s, last ack "
            f"{restart['median'] / 1000:.2f} s; CPU of the fresh processes until then: agent processes "
            f"{med('cpu_agents'):.1f} s, sandbox workers {med('cpu_workers'):.1f} s, on {os.cpu_count()} cores"
        )
        say(f"  ratio restart / deploy (idle medians): {restart['median'] / idle['wall']['median']:.0f}x")
    return {"agents": agents, "layout": where, "idle": idle, "busy": busy, "restart": restart}


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[10, 100, 1000],
                        help="fleet sizes (default 10 100 1000)")
    parser.add_argument("--deploys", type=int, default=30,
                        help="measured deploys per fleet and load (default 30, at least 20)")
    parser.add_argument(
        "--restarts", type=int,
        help=f"restarts per fleet for the baseline (default 3, and 1 from {BIG} agents: each takes minutes there)",
    )
    parser.add_argument("--processes", type=int,
                        help="agent processes (default: 2 to 4 up to 100 agents, 125 agents each beyond)")
    parser.add_argument(
        "--share-sandbox-from", type=int, default=BIG,
        help=f"fleets of this many agents or more share one sandbox worker per agent process (default {BIG})",
    )
    parser.add_argument(
        "--busy-up-to", type=int, default=100,
        help="measure deploys under load only for fleets up to this size (default 100; 0: never)",
    )
    parser.add_argument("--quiet-below", type=float, default=0.5,
                        help="cores the fleet may use and still count as quiet before a measured phase (default 0.5)")
    parser.add_argument("--status-interval", type=float, default=2.0, help="agents' status period, s (default 2)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info"],
                        help="agents' and server's (default info: the agents' load times are read from their "
                        "INFO lines)")
    parser.add_argument("--workdir", help="keep configs, logs and databases here (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.agents) or args.deploys < 20 or (args.restarts or 0) < 0:
        parser.error("--agents must be positive, --deploys at least 20, --restarts not negative")

    # SIGTERM ends this run like Ctrl-C: the finally blocks stop every process.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    setup_logging("error")
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="oodida-bench-deploy-"))
    print(
        f"deploy latency on {platform.node()}: {os.cpu_count()} cores shared by the server, every agent and every "
        f"sandbox worker; Python {platform.python_version()}; {args.deploys} deploys per series"
    )
    results = []
    ok = False
    try:
        for agents in args.agents:
            results.append(bench_one(agents, args, root))
        ok = True
    except (FleetError, RequestFailed) as exc:
        print(f"deploy_latency: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; every process was stopped", file=sys.stderr)
        return 130
    finally:
        if ok and not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
        elif not ok:
            print(f"(configs and logs kept in {root})", file=sys.stderr)
    print(f"\nsummary: deploy -> last ack, quorum all ({os.cpu_count()} cores for everything)")
    for r in results:
        idle, busy, restart = r["idle"], r["busy"], r["restart"]
        line = (
            f"  {r['agents']} agents [{r['layout']}]: median {idle['wall']['median']:.1f} ms, "
            f"p99 {idle['wall']['p99']:.1f} ms, max {idle['wall']['max']:.1f} ms (server side median "
            f"{idle['server']['median']:.1f} ms)"
        )
        if busy is not None:
            line += f"; under load median {busy['wall']['median']:.1f} ms, p99 {busy['wall']['p99']:.1f} ms"
        if restart is not None:
            line += (
                f"; restart median {restart['median'] / 1000:.2f} s = "
                f"{restart['median'] / idle['wall']['median']:.0f}x the deploy"
            )
        print(line)
    for r in results:
        if r["agents"] == 100:
            p99 = r["idle"]["wall"]["p99"]
            print(f"  aim p99 <= {TARGET_P99_MS:g} ms at 100 agents (idle fleet): "
                  f"{'met' if p99 <= TARGET_P99_MS else 'NOT met'} (p99 {p99:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
