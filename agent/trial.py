"""`oodida try mine.py --log LOG --dbc DBC [--vehicles N | --offsets 0,15]`: run a
whole assignment locally, as a fleet would.

Analysts test here before they ship, the off-board half too. Each simulated vehicle
is the agent's own path: a log replayed from its offset through the same decoder into
the same signal store, the window cut the same way, the module's on_board run in the
same sandbox worker with the same limits. Then off_board (the module's own, or
`--off-board FILE.py`) runs over their answers in a sandbox worker of its own, as on
the server, and the outcome is printed as the report `oodida results` prints (the
dispatcher hands in the server's renderer: the agent package may not import it).
Exit 0 when every vehicle and off_board succeeded, 3 when some vehicles failed,
1 when all did or off_board failed, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from oodida.agent.modules import TRIAL, ModuleRunner
from oodida.agent.pump import Pump
from oodida.agent.store import SignalStore, Window
from oodida.agent.tasks import SignalResolver
from oodida.analytics.arrays import to_json_ready
from oodida.core.args import ArgumentError, parse_param, parse_window
from oodida.core.errors import OodidaError
from oodida.core.logs import setup_logging
from oodida.core.suggest import SuggestingParser
from oodida.core.text import inert
from oodida.hw.dbc import SignalDecoder
from oodida.hw.sources import LogReplay, open_source
from oodida.sandbox.errors import Violation
from oodida.sandbox.host import SandboxHost
from oodida.sandbox.policy import defines
from oodida.sandbox.supervisor import SandboxLimits, source_hash
from oodida.wire.messages import IterationReport, ModuleSource, VehicleReport, WindowSpec


async def _window(args: argparse.Namespace, log: str, offset: float, spec: WindowSpec) -> Window:
    """One simulated vehicle's window: the log replayed from `offset` through the agent's
    decoder into its store, cut as on a vehicle."""
    every = SignalDecoder(args.dbc)
    signals = [every.resolve(s) for s in args.signals.split(",")]
    decoder = SignalDecoder(args.dbc, signals)
    store = SignalStore(retention=1e9, max_samples=10_000_000)
    store.declare(list(decoder.signal_names))
    store.bind_loop(asyncio.get_running_loop())
    source = open_source("log", path=log, speed=0.0, offset=offset, loop=False, channel=args.channel)
    pump = Pump("trial", source, decoder, store)
    names = SignalResolver([decoder], store).resolve(args.signals.split(","))
    try:
        if spec.kind in ("next", "first"):  # as on a vehicle: the task is there before the data
            waiting = asyncio.create_task(store.window(names, spec, timeout=args.timeout))
            await asyncio.sleep(0)
            pump.start()
            return await waiting
        pump.start()
        while pump.state in ("starting", "running"):  # noqa: ASYNC110 (a reader thread's state: nothing to await)
            await asyncio.sleep(0.02)
        return store.latest(names, spec)
    finally:
        pump.stop()


def simulated_vehicles(args: argparse.Namespace, spec: WindowSpec) -> list[tuple[str, str, float]]:
    """(name, log, offset) per simulated vehicle: explicit `--offsets`, or `--vehicles N`
    spread over each log so every one has a whole window, else one at `--offset`."""
    logs: list[str] = args.log
    if args.offsets:
        try:
            offsets = [float(x) for x in args.offsets.split(",")]
        except ValueError:
            raise ArgumentError(f"--offsets {args.offsets!r}: write seconds, e.g. 0,15,30") from None
        plan = [(log, o) for log in logs for o in offsets]
    elif args.vehicles:
        plan = []
        for i in range(args.vehicles):
            log = logs[i % len(logs)]
            k, n = i // len(logs), len(range(i % len(logs), args.vehicles, len(logs)))
            duration = LogReplay(log, speed=0.0, channel=args.channel).duration
            if spec.unit == "s":  # the last one still has its windows, with a margin: `next` needs a sample past
                span = spec.amount * args.iterations if spec.kind == "next" else spec.amount
                room = max(duration - span * 1.05 - 0.5, 0.0)
                plan.append((log, 0.0 if n == 1 else round(room * k / (n - 1), 3)))
            else:  # samples: their duration is the signal's rate's business; spread over all but the last share
                plan.append((log, round(duration * k / n, 3)))
    else:
        plan = [(log, args.offset) for log in logs]
    return [(f"sim-{i + 1}", log, offset) for i, (log, offset) in enumerate(plan)]


async def run_trial(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every iteration's outcome (see `trial_iterations`)."""
    return [out async for out in trial_iterations(args)]


async def trial_iterations(args: argparse.Namespace) -> AsyncIterator[dict[str, Any]]:
    """on_board on every simulated vehicle, then off_board over their answers, each in
    the sandbox the agent and the server use; each iteration's outcome as it closes.

    Iteration k of a vehicle replays its log from `offset + (k - 1) * window`: the
    windows follow each other as `next` windows do on a vehicle (`latest` and `first`
    windows see the same data each iteration, as on a replayed drive). What off_board
    returned is the state of both halves in the next iteration, as the server sends
    it with the next task."""
    path = Path(args.module)
    # the command's own files, read before anything else runs on the loop
    module = ModuleSource(name=path.name, source=path.read_text())  # noqa: ASYNC240
    off_path = Path(args.off_board) if args.off_board else path
    off_module = module if off_path == path else ModuleSource(name=off_path.name, source=off_path.read_text())
    spec = WindowSpec(**{"kind": "next", **parse_window(args.window)})
    if args.iterations > 1 and spec.unit != "s":
        raise ArgumentError("--iterations above 1 needs a window in seconds (e.g. 5s), to place each iteration's")
    params = dict(parse_param(p) for p in args.param)
    vehicles = simulated_vehicles(args, spec)
    limits = SandboxLimits(call_timeout=args.call_timeout)
    runner = ModuleRunner(limits)  # one worker for all vehicles: one assignment, as on an agent
    server_side = SandboxHost(limits)  # and the server's own, for off_board
    has_off_board = defines(off_module.source, "off_board")
    state: Any = None
    try:
        for iteration in range(1, args.iterations + 1):
            shift = (iteration - 1) * spec.amount if spec.kind == "next" else 0.0
            started = time.time()
            out: dict[str, Any] = {
                "iteration": iteration,
                "iterations": args.iterations,
                "module": module.name,
                "code_hash": source_hash(module.source),
                "off_board": None,
                "vehicles": {},
            }
            windows = await asyncio.gather(
                *(_window(args, log, offset + shift, spec) for _, log, offset in vehicles), return_exceptions=True
            )
            answers: dict[str, Any] = {}
            for (name, log, offset), window in zip(vehicles, windows, strict=True):
                row: dict[str, Any] = {"log": log, "offset": offset + shift}
                if isinstance(window, BaseException):
                    if not isinstance(window, (OodidaError, OSError, ValueError)):
                        raise window
                    if len(vehicles) == 1 or iteration == 1 and all(isinstance(w, BaseException) for w in windows):
                        raise window  # nothing to simulate at all: the command's error, exit 2
                    row.update(ok=False, rule="window", error=str(window), window={"samples": {}})
                    out["vehicles"][name] = row
                    continue
                row["window"] = {
                    "kind": spec.kind, "samples": window.samples, "t_start": window.t_start, "t_end": window.t_end,
                }
                try:
                    value, flags = await runner.on_board(module, window, params, state)
                    row.update(ok=True, value=to_json_ready(value), flags=flags)
                    answers[name] = value
                except Violation as exc:
                    row.update(ok=False, rule=exc.rule.value, error=exc.message, line=exc.line)
                out["vehicles"][name] = row
            if has_off_board and answers:
                off: dict[str, Any] = {"module": off_module.name, "code_hash": source_hash(off_module.source)}
                try:
                    outcome = await server_side.run(
                        off_module.source, off_module.name, "off_board", assignment=TRIAL, results=answers,
                        params=params, state=state,
                    )
                    off.update(ok=True, value=to_json_ready(outcome.value))
                    state = outcome.value
                except Violation as exc:
                    off.update(ok=False, rule=exc.rule.value, error=exc.message, line=exc.line)
                out["off_board"] = off
            out["ok"] = all(v["ok"] for v in out["vehicles"].values()) and (out["off_board"] or {}).get("ok", True)
            if len(vehicles) == 1:  # one vehicle: its fields at the top too, as `try --json` gave before
                only = out["vehicles"][vehicles[0][0]]
                out.update({k: v for k, v in only.items() if k not in ("log", "offset", "ok")})
            out["started"], out["closed"] = started, time.time()
            yield out
    finally:
        await runner.close()
        await server_side.close()


def as_report(out: dict[str, Any]) -> IterationReport:
    """The trial as the iteration report `oodida results` prints for a real one."""
    vehicles = {
        name: VehicleReport(
            ok=v["ok"], code_hash=out["code_hash"], value=v.get("value"),
            error=None if v["ok"] else f"{v['rule']}: {v['error']}" + (f" (line {v['line']})" if v.get("line") else ""),
            samples=v["window"]["samples"], flags=v.get("flags", []),
        )
        for name, v in out["vehicles"].items()
    }
    off = out["off_board"]
    answered = sum(v.ok for v in vehicles.values())
    failed = off is not None and not off["ok"]
    status = "failed" if failed or not answered else "complete" if answered == len(vehicles) else "partial"
    reason = None
    if failed:
        reason = f"off_board: {off['rule']}: {off['error']}" + (f" (line {off['line']})" if off.get("line") else "")
    elif answered < len(vehicles):
        reason = f"{len(vehicles) - answered} of {len(vehicles)} vehicles failed"
    return IterationReport(
        id=0, assignment=1, iteration=out["iteration"], iterations=out["iterations"], status=status, vehicles=vehicles,  # type: ignore[arg-type]
        missing=[], started=out["started"], closed=out["closed"],
        fleet=None if off is None or not off["ok"] else off["value"], reason=reason,
        code_hash=out["code_hash"], off_board_hash=None if off is None else off["code_hash"],
    )


def build_parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(
        prog="oodida try", description="Run your module's on_board in the real sandbox on a recorded log."
    )
    parser.add_argument("module", metavar="FILE.py")
    parser.add_argument(
        "--log", required=True, action="append", help="a CAN log python-can reads (e.g. candump -L); repeat for more"
    )
    parser.add_argument("--off-board", metavar="FILE.py", help="off_board from this file (default: the module's own)")
    parser.add_argument("--dbc", required=True)
    parser.add_argument("--signals", required=True, help="comma-separated signal names, as in the DBC")
    parser.add_argument("--window", default="10s", help="e.g. 10s (the first 10 s), 500samples, latest:10s")
    parser.add_argument("--channel", help="keep only this channel's frames (e.g. can0)")
    parser.add_argument("--offset", type=float, default=0.0, help="seconds into the log to start at")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--vehicles", type=int, metavar="N", help="N simulated vehicles, their offsets spread over the logs"
    )
    group.add_argument("--offsets", metavar="S,S,...", help="one simulated vehicle per offset (seconds) and log")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--iterations", type=int, default=1,
        help="iterations, each window after the last; off_board's value is the next state",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the window")
    parser.add_argument("--call-timeout", type=float, default=10.0, help="seconds the module may run (as on a vehicle)")
    parser.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str], render: Callable[[IterationReport], str] | None = None) -> int:
    """`render`: how `oodida results` prints a report (the dispatcher passes the
    server's renderer, which the agent package may not import); without one, JSON
    (one object per iteration and line, as `oodida results --json`)."""
    args = build_parser().parse_args(argv)
    if args.vehicles is not None and not 1 <= args.vehicles <= 1000:
        print("oodida try: --vehicles takes 1 to 1000", file=sys.stderr)
        return 2
    if not 1 <= args.iterations <= 10_000:
        print("oodida try: --iterations takes 1 to 10000", file=sys.stderr)
        return 2
    setup_logging("warning")
    statuses: list[str] = []

    async def show() -> None:
        async for out in trial_iterations(args):
            report = as_report(out)
            statuses.append(report.status)
            if args.json or render is None:
                print(json.dumps(out), flush=True)
                continue
            if out["iteration"] == 1:
                for name, v in out["vehicles"].items():
                    print(f"{name}: {v['log']} from {v['offset']:g} s")
            print(render(report) + ("\n" if args.iterations > 1 else ""), flush=True)
            for name, v in out["vehicles"].items():
                for flag in v.get("flags", []):
                    print(inert(f"flag: {name}: {flag}"))

    try:
        asyncio.run(show())
    except (OodidaError, OSError, ValueError) as exc:
        print(inert(f"oodida try: {exc}"), file=sys.stderr)
        return 1 if statuses else 2  # once an iteration ran, the trial failed; before, the command line did
    if all(s == "complete" for s in statuses):
        return 0
    return 1 if all(s == "failed" for s in statuses) else 3
