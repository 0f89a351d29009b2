"""The analyst's commands and `oodida server`.

Every analyst command talks to the server over the same protocol as the vehicles,
prints readable tables by default and JSON (one object per line) with `--json`.
Exit codes: oodida.core.exitcodes (0 done, 1 refused or failed, 2 bad usage, 3 some
iterations partial or failed, 130 interrupted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from oodida.client import AsyncClient, ConfigurationError
from oodida.client.progress import Progress
from oodida.client.shape import error_shape, shape
from oodida.core import exitcodes
from oodida.core.args import ArgumentError, parse_param, parse_window
from oodida.core.errors import OodidaError
from oodida.core.logs import setup_logging
from oodida.core.suggest import SuggestingParser
from oodida.link.credfile import CredentialFileError
from oodida.server import admin_cli, deploy_cli, export_cli, signals_cli
from oodida.server.client import AnalystClient, RequestFailed
from oodida.server.config import ConfigError
from oodida.server.dbcheck import DatabaseUnusable
from oodida.server.render import render_report, render_status
from oodida.server.spec import SpecError, build_spec
from oodida.wire.messages import IterationReport, ResultsEnd

log = logging.getLogger(__name__)


def _add_connection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server", default=os.environ.get("OODIDA_SERVER"),
        help="HOST:PORT, instead of the credential file's (env OODIDA_SERVER)"
    )
    p.add_argument(
        "--credentials", default=os.environ.get("OODIDA_CREDENTIALS"),
        help="your credential file, from oodida init or oodida credentials add --write (env OODIDA_CREDENTIALS)",
    )
    p.add_argument("--ca", help="CA certificate (PEM) of the server, instead of the one in the credential file")
    p.add_argument("--json", action="store_true", help="machine-readable output, one JSON object per line")


def build_parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(prog="oodida", description="Distributed analytics on a fleet of vehicles.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("server", help="run the off-board server")
    p.add_argument("--config", required=True)
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    p.add_argument("--log-format", choices=["text", "journal"], default="text")

    p = sub.add_parser("submit", help="start an assignment")
    _add_connection(p)
    p.add_argument("file", nargs="?", help="assignment TOML file (flags override its keys)")
    p.add_argument("--name")
    p.add_argument("--signals", help="comma-separated signal names, as in the DBC")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--vehicles", help="comma-separated vehicle ids")
    group.add_argument("--count", type=int, help="the first N connected vehicles")
    p.add_argument("--window", help="e.g. 5s, 100samples, latest:10s")
    p.add_argument("--window-kind", choices=["next", "latest", "first"])
    p.add_argument("--iterations", type=int, help="0 = until cancelled")
    p.add_argument("--on-board", help="comma-separated built-in methods, e.g. mean,min,max,histogram")
    p.add_argument("--off-board", choices=["fleet", "none"])
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="method parameter (TOML value)")
    p.add_argument("--on-board-module", metavar="FILE.py", help="your module's on_board(window, params, state)")
    p.add_argument("--off-board-module", metavar="FILE.py", help="your module's off_board(results, params, state)")
    p.add_argument("--quorum", type=float, help="answers that close an iteration: a count, or a fraction ≤ 1")
    p.add_argument("--deadline", type=float, help="seconds per iteration")
    p.add_argument("--wait", action="store_true", help="block until done and print every iteration")
    p.add_argument("--sign", metavar="KEY", help="sign the modules with this private key (oodida keygen)")

    p = sub.add_parser("check", help="check modules under the sandbox policy (no server needed)")
    p.add_argument("modules", nargs="*", metavar="FILE.py")
    p.add_argument("--json", action="store_true")
    p.add_argument("--allowed", action="store_true", help="list what a module may import and call, and exit")

    p = sub.add_parser("status", help="vehicles connected, assignments and their progress")
    _add_connection(p)

    p = sub.add_parser("results", help="an assignment's results")
    _add_connection(p)
    p.add_argument("assignment", type=int)
    p.add_argument("--follow", action="store_true", help="keep printing new iterations until it ends")
    p.add_argument("--since", type=int, default=0, help="only iterations after this one")
    export_cli.add_export_options(p)

    export_cli.add_plot_parser(sub, _add_connection)

    deploy_cli.add_parsers(sub, _add_connection)
    signals_cli.add_parser(sub, _add_connection)
    admin_cli.add_parsers(sub)

    p = sub.add_parser("cancel", help="stop an assignment after its current iteration")
    _add_connection(p)
    p.add_argument("assignment", type=int)
    return exitcodes.document(parser)


class UsageError(OodidaError):
    pass


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--server {text!r}: write HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


async def _connect(args: argparse.Namespace) -> AsyncClient:
    """The analysts' client (oodida.client), as every analyst command's connection."""
    if not args.credentials:
        raise UsageError("no credentials: pass --credentials FILE or set OODIDA_CREDENTIALS (oodida init writes them)")
    server = _address(args.server) if args.server else None
    try:
        return await AsyncClient.connect(args.credentials, server=server, ca=args.ca)
    except ConfigurationError as exc:  # bad configuration: exit 2, as for bad usage
        raise UsageError(str(exc)) from None


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


async def _submit(args: argparse.Namespace) -> int:
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
    async with await _connect(args) as client:
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


async def _status(args: argparse.Namespace) -> int:
    async with await _connect(args) as client:
        status = await client.status()
    _emit(args, shape(status), render_status(status))
    return 0


async def _results(args: argparse.Namespace) -> int:
    async with await _connect(args) as client:
        if export_cli.exporting(args):
            return await export_cli.export(args, client)
        final = await follow_results(
            client, args.assignment, follow=args.follow, since=args.since, as_json=args.json, methods=None
        )
    return 0 if final in ("done", "running") else 1


async def _cancel(args: argparse.Namespace) -> int:
    async with await _connect(args) as client:
        state = await client.cancel(args.assignment)
    _emit(args, {"assignment": args.assignment, "state": state}, f"assignment {args.assignment}: {state}")
    return 0


def _run_server(args: argparse.Namespace) -> int:
    from oodida.server.app import serve
    from oodida.server.config import ConfigError, load_server_config

    try:
        config = load_server_config(args.config)
    except ConfigError as exc:  # 2, as for the agent: the unit does not restart on it
        print(f"oodida server: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level, fmt=args.log_format)
    from oodida.core.limits import tune_gc_for_service

    tune_gc_for_service()  # a process-wide choice: the server's command, not its class
    from oodida.server.app import ServerFailed
    from oodida.server.dbcheck import DatabaseUnusable
    from oodida.server.listen import ListenError

    try:
        asyncio.run(_serve_until_signal(config, serve))
    except (DatabaseUnusable, ListenError) as exc:  # the configuration's to mend: 2, no restart
        log.debug("the server did not start", exc_info=True)
        log.error("%s", exc)
        return 2
    except ServerFailed:  # already logged, once, with the reason
        log.debug("the server stopped", exc_info=True)
        return 1
    except KeyboardInterrupt:
        pass
    except OodidaError as exc:  # found while starting, e.g. the [metrics] port is taken: 1, the unit may retry
        print(f"oodida server: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve_until_signal(config: Any, serve: Any) -> None:
    """Serve until SIGTERM/SIGINT. Under systemd (`Type=notify`): READY=1 once the
    server listens, WATCHDOG=1 from this event loop (a wedged loop stops the pings
    and systemd restarts the server), STOPPING=1 when the signal arrives."""
    import signal

    from oodida.core.service import Notifier

    notifier = Notifier()
    ready = asyncio.Event()
    task = asyncio.create_task(serve(config, ready))
    loop = asyncio.get_running_loop()

    def stop() -> None:
        notifier.stopping("stopping")
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    watchdog: asyncio.Task[None] | None = None
    try:
        started = asyncio.create_task(ready.wait())
        await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if ready.is_set():
            notifier.ready(f"listening on {config.listen.host}:{config.listen.port}")
            watchdog = asyncio.create_task(notifier.watchdog(), name="watchdog")
        await task
    except asyncio.CancelledError:
        pass
    finally:
        if watchdog is not None:
            watchdog.cancel()


COMMANDS = {
    "submit": _submit,
    "status": _status,
    "results": _results,
    "cancel": _cancel,
    "deploy": lambda args: deploy_cli.deploy(args, _connect),
    "rollback": lambda args: deploy_cli.rollback(args, _connect),
    "versions": lambda args: deploy_cli.versions(args, _connect),
    "signals": lambda args: signals_cli.signals(args, _connect),
    "plot": lambda args: export_cli.plot(args, _connect),
}


def _check(args: argparse.Namespace) -> int:
    """Every problem of every module, with line numbers; exit 1 if any."""
    from oodida.sandbox.check import allowed_text, check_file, format_problems

    if args.allowed:
        print(allowed_text())
        return 0
    if not args.modules:
        raise UsageError("name the modules to check (oodida check mine.py), or ask --allowed")
    failed = False
    for path in args.modules:
        problems = check_file(path)
        failed = failed or bool(problems)
        if args.json:
            print(json.dumps({
                "module": path,
                "ok": not problems,
                "problems": [{"rule": p.rule.value, "line": p.line, "message": p.message} for p in problems],
            }))
        elif problems:
            print(format_problems(path, problems))
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


def _json_error(args: argparse.Namespace, reason: str, code: str) -> None:
    """Under --json a failure is also a JSON object on stdout, for scripts that parse it."""
    if getattr(args, "json", False):
        print(json.dumps(error_shape(args.command, reason, code)), flush=True)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "server":
            return _run_server(args)
        if args.command == "check":
            return _check(args)
        if args.command in admin_cli.COMMANDS:
            return admin_cli.COMMANDS[args.command](args)
        setup_logging("warning")
        return asyncio.run(COMMANDS[args.command](args))
    except RequestFailed as exc:
        _json_error(args, str(exc.reason), exc.code or "refused")
        print(f"oodida {args.command}: refused: {exc.reason}", file=sys.stderr)
        return 1
    except (UsageError, CredentialFileError, ArgumentError, SpecError, ConfigurationError) as exc:  # usage, configuration
        _json_error(args, str(exc), "usage")
        print(f"oodida {args.command}: {exc}", file=sys.stderr)
        return exitcodes.Exit.USAGE
    except (ConfigError, DatabaseUnusable) as exc:  # the server's files (oodida credentials): 2, as for the server
        print(f"oodida {args.command}: {exc}", file=sys.stderr)
        return exitcodes.Exit.USAGE
    except OodidaError as exc:
        _json_error(args, str(exc), "error")
        print(f"oodida {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return exitcodes.interrupted()
