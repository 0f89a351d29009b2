"""`oodida try mine.py --log LOG --dbc DBC`: run a module as a vehicle would, locally.

Analysts test here before they ship. It is the agent's own path: the log is replayed
through the same decoder into the same signal store, the window is cut the same way,
and the module runs in the same sandbox worker with the same limits. Exit 0 with the
value printed, or 1 with the rule it broke and why.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from agent.modules import ModuleRunner
from agent.pump import Pump
from agent.store import SignalStore
from agent.tasks import SignalResolver
from analytics.arrays import to_json_ready
from hw.dbc import SignalDecoder
from hw.sources import open_source
from oodida.args import parse_param, parse_window
from oodida.errors import OodidaError
from oodida.logs import setup_logging
from oodida.text import inert
from sandbox.errors import Violation
from sandbox.supervisor import SandboxLimits, source_hash
from wire.messages import ModuleSource, WindowSpec

async def run_trial(args: argparse.Namespace) -> dict[str, Any]:
    path = Path(args.module)
    module = ModuleSource(name=path.name, source=path.read_text())
    every = SignalDecoder(args.dbc)
    signals = [every.resolve(s) for s in args.signals.split(",")]
    decoder = SignalDecoder(args.dbc, signals)
    store = SignalStore(retention=1e9, max_samples=10_000_000)
    store.declare(list(decoder.signal_names))
    store.bind_loop(asyncio.get_running_loop())
    source = open_source("log", path=args.log, speed=0.0, offset=args.offset, loop=False, channel=args.channel)
    pump = Pump("trial", source, decoder, store)
    names = SignalResolver([decoder], store).resolve(args.signals.split(","))
    spec = WindowSpec(**{"kind": "next", **parse_window(args.window)})
    runner = ModuleRunner(SandboxLimits(call_timeout=args.call_timeout))
    params = dict(parse_param(p) for p in args.param)
    try:
        if spec.kind == "next":  # as on a vehicle: the task is there before the data
            waiting = asyncio.create_task(store.window(names, spec, timeout=args.timeout))
            await asyncio.sleep(0)
            pump.start()
            window = await waiting
        else:
            pump.start()
            while pump.state in ("starting", "running"):
                await asyncio.sleep(0.02)
            window = store.latest(names, spec)
        out: dict[str, Any] = {
            "module": module.name,
            "code_hash": source_hash(module.source),
            "window": {"kind": spec.kind, "samples": window.samples, "t_start": window.t_start, "t_end": window.t_end},
        }
        try:
            value, flags = await runner.on_board(module, window, params, None)
            out.update(ok=True, value=to_json_ready(value), flags=flags)
        except Violation as exc:
            out.update(ok=False, rule=exc.rule.value, error=exc.message, line=exc.line)
        return out
    finally:
        pump.stop()
        await runner.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="oodida try", description="Run your module's on_board in the real sandbox on a recorded log."
    )
    parser.add_argument("module", metavar="FILE.py")
    parser.add_argument("--log", required=True, help="a CAN log python-can reads (e.g. candump -L)")
    parser.add_argument("--dbc", required=True)
    parser.add_argument("--signals", required=True, help="comma-separated signal names, as in the DBC")
    parser.add_argument("--window", default="10s", help="e.g. 10s (the first 10 s), 500samples, latest:10s")
    parser.add_argument("--channel", help="keep only this channel's frames (e.g. can0)")
    parser.add_argument("--offset", type=float, default=0.0, help="seconds into the log to start at")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the window")
    parser.add_argument("--call-timeout", type=float, default=10.0, help="seconds the module may run (as on a vehicle)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    setup_logging("warning")
    try:
        out = asyncio.run(run_trial(args))
    except (OodidaError, OSError) as exc:
        print(f"oodida try: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out))
    elif out["ok"]:  # json.dumps escapes control characters in the value's keys and strings itself
        print(inert(f"{out['module']} ({out['code_hash'][:12]}) on {out['window']['samples']}:"))
        print(json.dumps(out["value"], indent=2))
        for flag in out["flags"]:
            print(inert(f"flag: {flag}"))
    else:  # the module's own message: inert, so it cannot drive the terminal
        line = f" (line {out['line']})" if out.get("line") else ""
        print(inert(f"{out['module']}: {out['rule']}: {out['error']}{line}"), file=sys.stderr)
    return 0 if out["ok"] else 1
