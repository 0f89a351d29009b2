"""`oodida submit`, `status`, `results` and `cancel`: start an assignment, see the
fleet, read or follow an assignment's iterations, stop it.

Each prints readable tables by default and JSON (one object per line) with `--json`.
Exit codes: oodida.core.exitcodes (0 done, 1 refused or failed, 2 bad usage, 3 some
iterations partial or failed, 130 interrupted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from oodida.client import AnalystClient, AsyncClient
from oodida.client.progress import Progress
from oodida.client.shape import shape
from oodida.commands import export
from oodida.commands.connection import connect
from oodida.commands.render import render_report, render_status
from oodida.commands.spec import build_spec
from oodida.core import exitcodes
from oodida.core.args import parse_param, parse_window
from oodida.wire.messages import IterationReport, ResultsEnd


def _emit(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    print(json.dumps(obj) if args.json else text, flush=True)


async def follow_results(
    client: AsyncClient | AnalystClient,
    assignment: int,
    *,
    follow: bool,
    since: int,
    as_json: bool,
    methods: list[str] | None,
    then: Callable[[IterationReport], Awaitable[None]] | None = None,
    statuses: list[str] | None = None,
) -> str:
    """Print every iteration as it arrives (and await `then` on each after printing
    it, and note its status in `statuses`); returns the assignment's final state. While following, a progress line on
    stderr when it is a terminal ("iteration 2 of 4: 3 of 5 answered, …")."""
    protocol = client.protocol if isinstance(client, AsyncClient) else client
    bar = Progress.create(None) if follow and isinstance(client, AsyncClient) else Progress()
    poller = asyncio.create_task(client._poll_progress(assignment, bar)) if bar.active else None  # type: ignore[union-attr]
    try:
        return await _print_results(protocol, assignment, follow, since, as_json, methods, then, bar, statuses)
    finally:
        if poller is not None:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
        bar.clear()


async def _print_results(
    protocol: AnalystClient, assignment: int, follow: bool, since: int, as_json: bool, methods: list[str] | None,
    then: Callable[[IterationReport], Awaitable[None]] | None, bar: Progress, statuses: list[str] | None,
) -> str:
    final = "running"
    async for item in protocol.results(assignment, follow=follow, since=since):
        bar.clear()
        if isinstance(item, IterationReport):
            if statuses is not None:
                statuses.append(item.status)
            if as_json:
                print(json.dumps(shape(item)), flush=True)
            else:
                print(render_report(item, methods) + "\n", flush=True)
            if then is not None:
                await then(item)
        elif isinstance(item, ResultsEnd):
            final = item.state
            if not as_json:
                reason = f" ({item.reason})" if item.reason else ""
                print(f"assignment {assignment}: {item.state}{reason}", flush=True)
    return final


async def submit(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {
        "name": args.name,
        "signals": args.signals.split(",") if args.signals else None,
        "vehicles": args.vehicles.split(",") if args.vehicles else args.count,
        "window": parse_window(args.window) if args.window else None,
        "window_kind": args.window_kind,
        "iterations": args.iterations,
        "on_board": args.on_board.split(",") if args.on_board else None,
        "off_board": args.off_board,
        "on_board_module": args.on_board_module,
        "off_board_module": args.off_board_module,
        "params": dict(parse_param(p) for p in args.param) or None,
        "quorum": (int(args.quorum) if args.quorum is not None and args.quorum > 1 else args.quorum),
        "deadline": args.deadline,
    }
    spec = build_spec(args.file, overrides)
    if args.sign:
        from oodida.core.signing import load_signing_key, sign_spec

        spec = sign_spec(load_signing_key(args.sign), spec)
    async with await connect(args) as client:
        submitted = await client.submit(spec=spec)
        _emit(
            args,
            {"assignment": submitted.id, "vehicles": submitted.vehicles},
            f"assignment {submitted.id} started on {len(submitted.vehicles)} vehicles: "
            + ", ".join(submitted.vehicles),
        )
        if not args.wait:
            return 0
        exitcodes.on_interrupt(exitcodes.still_running(submitted.id))
        statuses: list[str] = []
        final = await follow_results(
            client, submitted.id, follow=True, since=0, as_json=args.json, methods=spec.methods, statuses=statuses,
        )
    return exitcodes.for_assignment(final, statuses)


async def status(args: argparse.Namespace) -> int:
    async with await connect(args) as client:
        reply = await client.status()
    _emit(args, shape(reply), render_status(reply))
    return 0


async def results(args: argparse.Namespace) -> int:
    async with await connect(args) as client:
        if export.exporting(args):
            return await export.export(args, client)
        final = await follow_results(
            client, args.assignment, follow=args.follow, since=args.since, as_json=args.json, methods=None
        )
    return 0 if final in ("done", "running") else 1


async def cancel(args: argparse.Namespace) -> int:
    async with await connect(args) as client:
        state = await client.cancel(args.assignment)
    _emit(args, {"assignment": args.assignment, "state": state}, f"assignment {args.assignment}: {state}")
    return 0
