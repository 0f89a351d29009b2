"""`oodida deploy`, `oodida rollback`, `oodida versions`: replace a running
assignment's module and see which version ran when.

    $ oodida deploy speeding_v2.py --assignment 4 --on-board
    deploying speeding_v2.py 3f2a9c1b0e4d to assignment 4 (on board): 5 vehicles
      v1     runs it  +11.8 ms
      …
    5 of 5 vehicles run 3f2a9c1b0e4d, 14.2 ms after the deploy

Exit 0 when the quorum (all connected targets by default) runs the new version,
1 when the server refused the deploy (the old version keeps running) or vehicles
refused it or did not answer in time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from oodida.client import AsyncClient, DeployOutcome
from oodida.client.progress import Progress
from oodida.client.shape import shape
from oodida.core.errors import OodidaError
from oodida.core.text import inert
from oodida.wire.messages import DeployEnd, Deploying, DeployProgress, ModuleSource, VersionsReply

Connect = Callable[[argparse.Namespace], Any]


def add_parsers(sub: Any, add_connection: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("deploy", help="replace the module of a running assignment, without restarting anything")
    add_connection(p)
    p.add_argument("module", metavar="FILE.py")
    p.add_argument("--assignment", type=int, required=True)
    _add_side(p, required=True)
    p.add_argument("--sign", metavar="KEY", help="sign the module with this private key (oodida keygen)")
    _add_rollout(p)

    p = sub.add_parser("rollback", help="deploy an earlier version of an assignment's module again")
    add_connection(p)
    p.add_argument("assignment", type=int)
    p.add_argument("hash", help="the version's hash, or enough of its start to be unique (see oodida versions)")
    _add_side(p, required=False)
    _add_rollout(p)

    p = sub.add_parser("versions", help="every version of an assignment's modules and the iterations each served")
    add_connection(p)
    p.add_argument("assignment", type=int)


def _add_side(p: argparse.ArgumentParser, *, required: bool) -> None:
    side = p.add_mutually_exclusive_group(required=required)
    side.add_argument("--on-board", dest="side", action="store_const", const="on_board", help="the vehicles' module")
    side.add_argument("--off-board", dest="side", action="store_const", const="off_board", help="the server's module")


def _add_rollout(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vehicles", help="only these vehicles (comma-separated); the others keep their version")
    p.add_argument("--quorum", type=float, help="return once N vehicles (or this fraction, 0<F≤1) run it")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the vehicles (default 30)")


def _quorum(value: float | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if value > 1 else value  # as for submit: 1 means all of them


def _short(code_hash: str) -> str:
    return code_hash[:12]


def _read_module(path: Path) -> ModuleSource:
    """The module as the wire carries it, read before the command connects."""
    try:
        return ModuleSource(name=path.name, source=path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise OodidaError(f"cannot read {path}: {exc}") from None
    except msgspec.ValidationError as exc:
        raise OodidaError(f"{path}: {exc}") from None


async def deploy(args: argparse.Namespace, connect: Connect) -> int:
    module = _read_module(Path(args.module))
    if args.sign:
        from oodida.core.signing import load_signing_key

        key = load_signing_key(args.sign)
        module = key.sign(module, args.side)
        if not args.json:
            print(f"signed {module.name} with key {key.key_id} ({args.sign})", flush=True)
    async with await connect(args) as client:
        return await _run_deploy(args, client, args.side, module=module)


async def rollback(args: argparse.Namespace, connect: Connect) -> int:
    async with await connect(args) as client:
        outcome = await client.rollback(
            args.assignment, args.hash, args.side, on_event=_printer(args), **_rollout(args)
        )
    return 0 if outcome.ok else 1


def _rollout(args: argparse.Namespace) -> dict[str, Any]:
    return {"vehicles": args.vehicles.split(",") if args.vehicles else None, "quorum": _quorum(args.quorum),
            "timeout": args.timeout}


def _printer(args: argparse.Namespace) -> Callable[[Deploying | DeployProgress | DeployEnd], None]:
    """Each reply as it arrives on stdout; on a terminal, also a progress line on stderr
    ("deploy 5c18c8d0e1f2: 3 of 5 answered, 2.1 s"), cleared before each print."""
    bar = Progress.create(None if not args.json else False)
    asked: list[str] = []
    answered = 0

    def show(reply: Deploying | DeployProgress | DeployEnd) -> None:
        nonlocal answered
        bar.clear()
        if args.json:
            print(json.dumps({"event": type(reply).__struct_config__.tag, **shape(reply)}), flush=True)
        else:
            print(render_deploy_event(reply), flush=True)
        if isinstance(reply, Deploying):
            asked[:] = reply.vehicles
            bar.show(f"deploy {_short(reply.code_hash)}: 0 of {len(asked)} answered")
        elif isinstance(reply, DeployProgress):
            answered += len(reply.answers)
            elapsed = max((a.elapsed for a in reply.answers), default=0.0)
            bar.show(f"deploy: {answered} of {len(asked)} answered, {elapsed:.1f} s")

    return show


async def _run_deploy(args: argparse.Namespace, client: AsyncClient, side: str, module: ModuleSource) -> int:
    outcome: DeployOutcome = await client.deploy(
        args.assignment, module, side, on_event=_printer(args), **_rollout(args)
    )
    return 0 if outcome.ok else 1


def render_deploy_event(reply: Deploying | DeployProgress | DeployEnd) -> str:
    if isinstance(reply, Deploying):
        what = "rolling back to" if reply.rollback else "deploying"
        where = reply.side.replace("_", " ")
        offline = f"; offline (they load it when they reconnect): {', '.join(reply.offline)}" if reply.offline else ""
        return (f"{what} {reply.name} {_short(reply.code_hash)} to assignment {reply.assignment} ({where}):"
                f" {len(reply.vehicles)} {'target' if reply.vehicles == ['server'] else 'vehicles'}{offline}")
    if isinstance(reply, DeployProgress):
        lines = []
        for a in reply.answers:
            status = "runs it" if a.ok else f"REFUSED it, keeps its version: {inert(a.error or '')}"  # module text
            lines.append(f"  {a.vehicle:<12} {status}  +{a.elapsed * 1000:.1f} ms")
        return "\n".join(lines)
    running = len(reply.acked)
    asked = running + len(reply.refused) + len(reply.waiting)
    text = f"{running} of {asked} run {_short(reply.code_hash)}, {reply.elapsed * 1000:.1f} ms after the deploy"
    if reply.refused:
        text += f"; refused by {', '.join(sorted(reply.refused))}"
    if reply.waiting:
        text += f"; no answer yet from {', '.join(reply.waiting)}"
    if not reply.complete:
        text += " (quorum not reached)"
    return text


async def versions(args: argparse.Namespace, connect: Connect) -> int:
    async with await connect(args) as client:
        reply = await client.versions_reply(args.assignment)
    if args.json:
        print(json.dumps(shape(reply)), flush=True)
    else:
        print(render_versions(reply), flush=True)
    return 0


def _ranges(numbers: list[int]) -> str:
    """1,2,3,5,7,8 -> 1-3,5,7-8"""
    out: list[str] = []
    for n in numbers:
        if out and n == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ",".join(out) or "—"


def render_versions(reply: VersionsReply) -> str:
    lines = [f"assignment {reply.assignment}: {len(reply.versions)} deploys", ""]
    width = max((len(v.name) for v in reply.versions), default=6)
    lines.append(f"  {'side':<10} {'hash':<12}  {'module':<{width}}  {'kind':<8} {'by':<12} {'signed by':<16}"
                 f" {'when':<19}  {'iterations':<12} running on")
    for v in reply.versions:
        when = dt.datetime.fromtimestamp(v.at).strftime("%Y-%m-%d %H:%M:%S")
        mark = "*" if v.current else " "
        to = "" if v.vehicles is None else f" (deployed to {', '.join(v.vehicles)})"
        running = ", ".join(v.acked) if v.side == "on_board" else "server"
        lines.append(
            f"{mark} {v.side.replace('_', ' '):<10} {_short(v.code_hash):<12}  {v.name:<{width}}  {v.kind:<8}"
            f" {v.by:<12} {v.signer or 'unsigned':<16} {when:<19}  {_ranges(v.iterations):<12} {running or '—'}{to}"
        )
    lines.append("")
    lines.append("* current: the version (some of) the vehicles or the server are asked to run now")
    return "\n".join(lines)
