"""Fleet scale: how many vehicles one server process holds, and how fast it iterates them.

Run on demand, not as a test:

    .venv/bin/python bench/fleet_scale.py [--sizes 100,1000,10000] [--iterations N] [--workers 3]
                                          [--compare-tree DIR] [--no-follow] [--profile] [--workdir DIR]

For each fleet size: one real server process (`python -m oodida server`, a fresh
SQLite database) and the simulated vehicles (bench/fleet_sim.py) in a few worker
processes on loopback, thousands of asyncio connections each, every vehicle with its
own TCP connection and the real protocol (handshake, status, Task -> Result ->
ResultAck) but only light on-board work (the built-in methods on a 50-sample numpy
window). Then an analyst (this process) submits one assignment over every connected
vehicle, quorum all, and follows its results as `oodida results --follow` does.

Printed per size:
- connected: handshakes that succeeded / asked for, the time to connect them all
  (workers start dialing -> the last welcome), handshake latency, and how many were
  still connected at the end (per the server's status and the simulators' own count);
- iteration round trip: server side = IterationReport.closed - started (from just
  before the tasks go out to the off-board step done); as the analyst sees it = the
  report's arrival here - started (one clock: same machine);
- server CPU (/proc/PID/stat utime+stime) during connecting (per connection) and during
  the assignment (per iteration and per vehicle-iteration), incl. building and sending
  the reports the analyst follows;
- server memory: VmRSS idle, with all connected (per connection), after the
  assignment, and VmHWM.

Baseline, in the same run: the smallest size's figures; larger sizes are given as
ratios per vehicle against it (1.0x = linear scaling). With `--compare-tree DIR`, each
size is run a second time with the server from another source tree (e.g. main before
this work), simulators and analyst unchanged, and the ratios before/after are printed.
With `--profile`, the server runs under cProfile and its top functions are printed.
With `--no-follow`, the analyst does not follow (it watches the store for the end and
reads the reports afterwards), which shows what following costs the server.

The machine's load average is printed at the start and end: other processes on the
same cores move every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import pstats
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np

from oodida.client.protocol import AnalystClient, RequestFailed
from oodida.link import ChannelError
from oodida.link.tls import client_context
from oodida.server.credentials import Credentials
from oodida.server.pki import issue, make_ca
from oodida.testing import FleetError, _die_with_parent, free_port
from oodida.wire import Role
from oodida.wire.messages import AssignmentSpec, IterationReport, ResultsEnd, WindowSpec

sys.path.insert(0, str(HERE))
from fleet_sim import SAMPLES

SIGNALS = ["SPEED", "STEER_ANGLE"]
METHODS = ["count", "mean", "min", "max"]
DEFAULT_ITERATIONS = {100: 30, 1000: 20}  # else 10
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mib(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024.0
    return out


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds or [float("nan")], dtype=np.float64) * 1000.0
    return {"n": len(seconds), "median": float(np.median(ms)), "p99": float(np.percentile(ms, 99)),
            "max": float(ms.max())}


def fmt_ms(s: dict[str, float]) -> str:
    return f"median {s['median']:.1f} ms, p99 {s['p99']:.1f} ms, max {s['max']:.1f} ms (n {s['n']})"


# --- the processes ------------------------------------------------------------------------


@dataclass
class ServerProcess:
    workdir: Path
    tree: Path  # the source tree whose server runs
    profile: bool = False
    log_level: str = "info"
    vehicles: int = 0  # credentials for car-1 .. car-N
    tls: bool = False  # TLS with a CA of this run's own, else plain TCP on loopback
    port: int = field(default_factory=free_port)
    vehicle_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    analyst_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def ca_path(self) -> Path:
        return self.workdir / "ca.pem"

    @property
    def profile_path(self) -> Path:
        return self.workdir / "server.prof"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "server.toml"
        if self.tls:
            ca = make_ca("fleet_scale CA")
            ca.write(self.ca_path, self.workdir / "ca.key")
            issue(ca, "127.0.0.1", hosts=["127.0.0.1"], server=True).write(
                self.workdir / "server.pem", self.workdir / "server.key"
            )
            transport = '\n[tls]\ncert = "server.pem"\nkey = "server.key"\n'
        else:
            transport = "plain = true\n"
        config.write_text(
            f'database = "server.sqlite3"\n\n[listen]\nhost = "127.0.0.1"\nport = {self.port}\n{transport}'
        )
        # per-vehicle credentials, hashed as for a real fleet, but sharing one secret and
        # salt so 10,000 of them cost one key derivation here and one per simulator
        credentials = Credentials(self.workdir / "server.sqlite3")
        try:
            credentials.add_simulated([f"car-{i}" for i in range(1, self.vehicles + 1)], Role.VEHICLE,
                                      self.vehicle_secret)
            credentials.add("bench", Role.ANALYST, secret=self.analyst_secret, replace=True)
        finally:
            credentials.close()
        python = [sys.executable, *(["-m", "cProfile", "-o", str(self.profile_path)] if self.profile else [])]
        out = open(self.workdir / "server.log", "ab")  # noqa: SIM115 (the child keeps it)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OODIDA_TOKEN")}
        env["PYTHONPATH"] = str(self.tree)  # -m oodida from that tree, whatever is installed
        try:
            self.proc = subprocess.Popen(
                [*python, "-m", "oodida", "server", "--config", str(config), "--log-level", self.log_level],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.tree,
                preexec_fn=_die_with_parent, env=env,  # noqa: PLW1509
            )
        finally:
            out.close()

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            log = (self.workdir / "server.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise FleetError(f"server exited with {self.proc.returncode}: {' | '.join(log)}")

    async def client(self, timeout: float = 30.0) -> AnalystClient:
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                context = client_context(ca=str(self.ca_path)) if self.tls else None
                return await AnalystClient.connect("127.0.0.1", self.port, self.analyst_secret, identity="bench",
                                                   ssl_context=context, timeout=120.0)
            except ChannelError:
                if time.monotonic() > deadline:
                    raise FleetError(f"server did not accept connections within {timeout} s") from None
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)  # under cProfile, writing the profile takes a moment
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class SimWorkers:
    """The simulator processes, driven over their stdin/stdout (bench/fleet_sim.py)."""

    def __init__(self, server: ServerProcess, vehicles: int, workers: int, concurrency: int) -> None:
        self.server = server
        self.vehicles = vehicles
        per = math.ceil(vehicles / workers)
        self.shares = [(1 + lo, min(per, vehicles - lo)) for lo in range(0, vehicles, per)]
        self.concurrency = concurrency
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        env = dict(os.environ, FLEET_SIM_SECRET=self.server.vehicle_secret)
        for first, count in self.shares:
            self.procs.append(await asyncio.create_subprocess_exec(
                sys.executable, str(HERE / "fleet_sim.py"), "--port", str(self.server.port), "--first", str(first),
                "--count", str(count), "--concurrency", str(self.concurrency),
                *(["--cafile", str(self.server.ca_path)] if self.server.tls else []),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
                preexec_fn=_die_with_parent,
            ))

    async def _line(self, proc: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        if not line:
            raise FleetError(f"simulator {proc.pid} exited with {await proc.wait()}")
        return json.loads(line)

    async def wait_connected(self, timeout: float) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._line(p, timeout) for p in self.procs)))

    async def report(self) -> list[dict[str, Any]]:
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write(b"report\n")
        return list(await asyncio.gather(*(self._line(p, 60.0) for p in self.procs)))

    async def stop(self) -> None:
        for p in self.procs:
            if p.returncode is None and p.stdin is not None:
                try:
                    p.stdin.write(b"stop\n")
                    p.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    pass
        for p in self.procs:
            try:
                await asyncio.wait_for(p.wait(), 30)
            except TimeoutError:
                p.kill()
                await p.wait()


def total(reports: list[dict[str, Any]], key: str) -> int:
    return sum(int(r[key]) for r in reports)


def merged_reasons(reports: list[dict[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in reports:
        for reason, n in r[key].items():
            out[reason] = out.get(reason, 0) + n
    return out


# --- one fleet size -------------------------------------------------------------------------


async def run_size(
    vehicles: int, iterations: int, args: argparse.Namespace, workdir: Path, tree: Path
) -> dict[str, Any]:
    server = ServerProcess(workdir, tree, profile=args.profile, log_level=args.log_level, vehicles=vehicles,
                           tls=args.tls)
    workers = SimWorkers(server, vehicles, min(args.workers, vehicles), args.concurrency)
    server.start()
    client: AnalystClient | None = None
    try:
        assert server.proc is not None
        pid = server.proc.pid
        client = await server.client()
        await asyncio.sleep(0.5)
        idle_mem, cpu0 = memory_mib(pid), cpu_seconds(pid)
        t0 = time.monotonic()
        await workers.start()
        connected_reports = await workers.wait_connected(timeout=args.connect_timeout)
        connect_wall = time.monotonic() - t0
        cpu_connect = cpu_seconds(pid) - cpu0
        connected = total(connected_reports, "connected")
        # the last statuses may still be in flight: the server counts a vehicle on its welcome
        status = await client.status()
        on_server = len(status.vehicles)
        connected_mem = memory_mib(pid)
        result: dict[str, Any] = {
            "vehicles": vehicles, "iterations": iterations, "connected": connected, "on_server": on_server,
            "connect_s": max(r["seconds"] for r in connected_reports), "connect_wall_s": connect_wall,
            "handshake_p99_ms": max(r["handshake_ms"]["p99"] for r in connected_reports),
            "handshake_max_ms": max(r["handshake_ms"]["max"] for r in connected_reports),
            "failed": merged_reasons(connected_reports, "failed_reasons"),
            "cpu_connect": cpu_connect, "mem_idle": idle_mem, "mem_connected": connected_mem,
            "nofile": min(r["nofile"] for r in connected_reports), "workers": len(workers.procs),
        }
        if on_server == 0:
            raise FleetError(f"no vehicle connected; failures: {result['failed']}")
        spec = AssignmentSpec(
            name=f"fleet scale {vehicles}", signals=SIGNALS, window=WindowSpec(amount=SAMPLES_WINDOW, unit="samples"),
            vehicles=on_server, iterations=iterations, on_board=METHODS, deadline=args.deadline,
        )
        cpu1 = cpu_seconds(pid)
        sims_cpu1 = sum(cpu_seconds(p.pid) for p in workers.procs)
        submitted = await client.submit(spec)
        reports: list[tuple[IterationReport, float]] = []
        end: ResultsEnd | None = None
        if args.follow:
            async for item in client.results(submitted.assignment, follow=True):
                if isinstance(item, IterationReport):
                    reports.append((item, time.time()))
                else:
                    end = item
        else:  # watch the store for the end (a reader costs the server nothing in WAL mode)
            await wait_finished(workdir / "server.sqlite3", submitted.assignment, server)
        cpu_run = cpu_seconds(pid) - cpu1
        sims_cpu = sum(cpu_seconds(p.pid) for p in workers.procs) - sims_cpu1
        run_mem = memory_mib(pid)
        if not args.follow:
            async for item in client.results(submitted.assignment):
                if isinstance(item, IterationReport):
                    reports.append((item, float("nan")))
                else:
                    end = item
        assert end is not None
        sims = await workers.report()
        final_status = await client.status()
        statuses: dict[str, int] = {}
        for r, _ in reports:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        expected = expected_fleet([v for v in submitted.vehicles])
        result.update({
            "fleet_ok": bool(reports) and all(fleet_matches(r.fleet, expected) for r, _ in reports),
            "state": end.state, "reason": end.reason, "statuses": statuses,
            "answered": [len(r.vehicles) for r, _ in reports],
            "rt_server": summary_ms([r.closed - r.started for r, _ in reports]),
            "rt_analyst": summary_ms([seen - r.started for r, seen in reports if not math.isnan(seen)]),
            "task_to_ack": max(s["task_to_ack_ms"]["p99"] for s in sims),
            "wall": reports[-1][0].closed - reports[0][0].started if reports else float("nan"),
            "cpu_run": cpu_run, "sims_cpu": sims_cpu, "mem_run": run_mem, "still_connected": len(final_status.vehicles),
            "lost": merged_reasons(sims, "lost_reasons"), "errors": merged_reasons(sims, "errors"),
            "results_sent": total(sims, "results"), "acks": total(sims, "acks"),
        })
        return result
    finally:
        if client is not None:
            await client.close()
        await workers.stop()
        server.stop()


SAMPLES_WINDOW = 50.0


async def wait_finished(database: Path, assignment: int, server: ServerProcess) -> None:
    """Until the assignment is no longer running, read from the server's SQLite file."""
    import sqlite3

    while True:
        server.check_alive()
        db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT state FROM assignments WHERE id = ?", (assignment,)).fetchone()
        finally:
            db.close()
        if row is not None and row[0] != "running":
            return
        await asyncio.sleep(0.1)


def expected_fleet(vehicles: list[str]) -> dict[str, float]:
    """The fleet's count, mean, min and max over the simulated windows, computed here
    from the same seeds (bench/fleet_sim.py: vehicle car-N draws with seed N)."""
    values = np.concatenate([np.random.default_rng(int(v.split("-")[1])).normal(50.0, 10.0, SAMPLES)
                             for v in vehicles])
    return {"count": values.size, "mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}


def fleet_matches(fleet: Any, expected: dict[str, float]) -> bool:
    try:
        return all(
            fleet["count"][s] == expected["count"] and math.isclose(fleet["mean"][s], expected["mean"], rel_tol=1e-9)
            and fleet["min"][s] == expected["min"] and fleet["max"][s] == expected["max"]
            for s in SIGNALS
        )
    except (KeyError, TypeError):
        return False


def print_size(r: dict[str, Any], label: str) -> None:
    n, its = r["vehicles"], r["iterations"]
    print(f"\n== {n} vehicles {label}: 1 server process, {r['workers']} simulator processes (fd limit {r['nofile']})")
    failed = f"; failed: {r['failed']}" if r["failed"] else ""
    print(
        f"  connected {r['connected']}/{n} (server counts {r['on_server']}) in {r['connect_s']:.2f} s "
        f"({r['connected'] / r['connect_s']:.0f}/s; handshake p99 {r['handshake_p99_ms']:.0f} ms, "
        f"max {r['handshake_max_ms']:.0f} ms){failed}"
    )
    print(
        f"  still connected after the assignment: {r['still_connected']} (lost {sum(r['lost'].values())}"
        f"{': ' + str(r['lost']) if r['lost'] else ''}); results sent {r['results_sent']}, acknowledged {r['acks']}"
        f"{'; server errors: ' + str(r['errors']) if r['errors'] else ''}"
    )
    print(f"  assignment: {its} iterations, quorum all, {r['state']}{' (' + r['reason'] + ')' if r['reason'] else ''}; "
          f"statuses {r['statuses']}; answers per iteration min {min(r['answered'], default=0)}")
    print(f"  check: fleet count, mean, min and max {'equal' if r['fleet_ok'] else 'DIFFER FROM'} numpy's over the "
          f"simulated windows, every iteration")
    print(f"  round trip, server (closed - started):      {fmt_ms(r['rt_server'])}")
    if r["rt_analyst"]["n"]:
        print(f"  round trip, analyst (report here - started): {fmt_ms(r['rt_analyst'])}")
    else:
        print("  (the analyst did not follow: --no-follow; the reports were read after the end, unmeasured)")
    print(f"  task received -> result acknowledged, p99 over vehicles: {r['task_to_ack']:.1f} ms")
    per_vi = r["cpu_run"] / (its * r["on_server"]) * 1e6
    print(
        f"  server CPU: connecting {r['cpu_connect']:.2f} s ({r['cpu_connect'] / max(r['connected'], 1) * 1e6:.0f} us "
        f"per connection); assignment {r['cpu_run']:.2f} s ({r['cpu_run'] / its * 1e3:.0f} ms per iteration, "
        f"{per_vi:.0f} us per vehicle-iteration); the simulators meanwhile {r['sims_cpu'] / its * 1e3:.0f} ms "
        f"per iteration (the same cores)"
    )
    idle, conn, run = r["mem_idle"], r["mem_connected"], r["mem_run"]
    print(
        f"  server memory: RSS idle {idle['VmRSS']:.0f} MiB, connected {conn['VmRSS']:.0f} MiB "
        f"({(conn['VmRSS'] - idle['VmRSS']) * 1024 / max(r['on_server'], 1):.1f} KiB per connection), "
        f"after the assignment {run['VmRSS']:.0f} MiB; peak (VmHWM) {run['VmHWM']:.0f} MiB"
    )


def per_vehicle(r: dict[str, Any]) -> dict[str, float]:
    n, its = r["on_server"], r["iterations"]
    return {
        "round trip (server) per vehicle": r["rt_server"]["median"] / n,
        "CPU per vehicle-iteration": r["cpu_run"] / (its * n),
        "CPU per connection": r["cpu_connect"] / max(r["connected"], 1),
        "memory per connection": (r["mem_connected"]["VmRSS"] - r["mem_idle"]["VmRSS"]) / n,
    }


def print_ratios(base: dict[str, Any], results: list[dict[str, Any]]) -> None:
    b = per_vehicle(base)
    print(f"\nscaling against the baseline of {base['on_server']} vehicles (per-vehicle cost; 1.0x = linear):")
    for r in results:
        if r is base:
            continue
        p = per_vehicle(r)
        print(f"  {r['on_server']:>6} vehicles: " + ", ".join(f"{k} {p[k] / b[k]:.2f}x" for k in b if b[k] > 0))


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def print_profile(path: Path, top: int) -> None:
    if not path.exists():
        print(f"  (no profile at {path})")
        return
    print(f"  server profile ({path}), top {top} by own time:")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(top)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000",
                        help="fleet sizes, comma-separated (default 100,1000,10000)")
    parser.add_argument("--iterations", type=int, help="per assignment (default 30 at 100, 20 at 1000, else 10)")
    parser.add_argument("--workers", type=int, default=3, help="simulator processes (default 3)")
    parser.add_argument("--concurrency", type=int, default=200, help="handshakes in flight per simulator (default 200)")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per iteration (default 120)")
    parser.add_argument("--connect-timeout", type=float, default=300.0, help="seconds for the whole fleet to connect")
    parser.add_argument("--compare-tree", type=Path, help="also run each size with the server of this source tree")
    parser.add_argument("--no-follow", dest="follow", action="store_false",
                        help="the analyst does not follow the results (the server builds no report meanwhile)")
    parser.add_argument("--tls", action="store_true", help="TLS between vehicles and server (a CA made for the run)")
    parser.add_argument("--profile", action="store_true", help="run the server under cProfile and print its top")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--workdir", type=Path,
                        help="keep configs, logs, databases here (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or any(n < 1 for n in sizes):
        parser.error("--sizes needs positive numbers")
    signal.signal(signal.SIGTERM, _interrupt)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="oodida-bench-scale-"))
    trees = [("", REPO)] + ([("(server from " + str(args.compare_tree) + ")", args.compare_tree.resolve())]
                            if args.compare_tree else [])
    print(f"fleet scale on {platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()}); "
          f"load average {loadavg()}; somaxconn {Path('/proc/sys/net/core/somaxconn').read_text().strip()}")
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in trees}
    ok = False
    try:
        for n in sorted(sizes):
            its = args.iterations or DEFAULT_ITERATIONS.get(n, 10)
            for label, tree in trees:
                workdir = root / f"{n}{'-compare' if label else ''}"
                r = asyncio.run(run_size(n, its, args, workdir, tree))
                results[label].append(r)
                print_size(r, label)
                if args.profile:
                    print_profile(workdir / "server.prof", 25)
        ok = True
    except (FleetError, RequestFailed) as exc:
        print(f"fleet_scale: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; every process was stopped", file=sys.stderr)
        return 130
    finally:
        if ok and not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
        elif not ok:
            print(f"(configs and logs kept in {root})", file=sys.stderr)
    print_ratios(results[""][0], results[""])
    if args.compare_tree:
        print(f"\nthis tree against the server of {args.compare_tree} (same simulators, same analyst):")
        for mine, theirs in zip(results[""], results[trees[1][0]], strict=False):
            print(
                f"  {mine['vehicles']:>6} vehicles: round trip median {mine['rt_server']['median']:.1f} ms vs "
                f"{theirs['rt_server']['median']:.1f} ms "
                f"({theirs['rt_server']['median'] / mine['rt_server']['median']:.1f}x), "
                f"CPU per iteration {mine['cpu_run'] / mine['iterations'] * 1e3:.0f} ms vs "
                f"{theirs['cpu_run'] / theirs['iterations'] * 1e3:.0f} ms, connect {mine['connect_s']:.1f} s vs "
                f"{theirs['connect_s']:.1f} s, connected {mine['on_server']} vs {theirs['on_server']}"
            )
    print("\nsummary")
    for r in results[""]:
        print(
            f"  {r['vehicles']:>6} vehicles: {r['on_server']} connected in {r['connect_s']:.1f} s, "
            f"{r['still_connected']} at the end; round trip median {r['rt_server']['median']:.0f} ms, "
            f"p99 {r['rt_server']['p99']:.0f} ms"
            + (f" (analyst sees median {r['rt_analyst']['median']:.0f} ms); " if r["rt_analyst"]["n"] else "; ")
            + f"server CPU {r['cpu_run'] / r['iterations'] * 1e3:.0f} ms per iteration; "
            f"RSS {r['mem_run']['VmRSS']:.0f} MiB, "
            f"peak {r['mem_run']['VmHWM']:.0f} MiB"
        )
    print(f"load average at the end {loadavg()}")
    return 0 if all(r["state"] == "done" and r["fleet_ok"] for r in results[""]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
