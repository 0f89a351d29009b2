"""The parser of every command `oodida` does not hand to another package's own
parser (agent, try, demo, keygen, dashboard, completion), and the one place that
turns how a command ended into its exit status (oodida.core.exitcodes)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from oodida.client import ConfigurationError, RequestFailed
from oodida.client.shape import error_shape
from oodida.commands import assignments, check, deploy, export, signals
from oodida.commands.connection import UsageError, add_connection, connect
from oodida.commands.spec import SpecError
from oodida.core import exitcodes
from oodida.core.args import ArgumentError
from oodida.core.errors import OodidaError
from oodida.core.logs import setup_logging
from oodida.core.suggest import SuggestingParser
from oodida.link.credfile import CredentialFileError
from oodida.server import admin_cli
from oodida.server import cli as server_cli
from oodida.server.config import ConfigError
from oodida.server.dbcheck import DatabaseUnusable


def build_parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(prog="oodida", description="Distributed analytics on a fleet of vehicles.")
    sub = parser.add_subparsers(dest="command", required=True)

    server_cli.add_parser(sub)

    p = sub.add_parser("submit", help="start an assignment")
    add_connection(p)
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

    check.add_parser(sub)

    p = sub.add_parser("status", help="vehicles connected, assignments and their progress")
    add_connection(p)

    p = sub.add_parser("results", help="an assignment's results")
    add_connection(p)
    p.add_argument("assignment", type=int)
    p.add_argument("--follow", action="store_true", help="keep printing new iterations until it ends")
    p.add_argument("--since", type=int, default=0, help="only iterations after this one")
    export.add_export_options(p)

    export.add_plot_parser(sub, add_connection)

    deploy.add_parsers(sub, add_connection)
    signals.add_parser(sub, add_connection)
    admin_cli.add_parsers(sub)

    p = sub.add_parser("cancel", help="stop an assignment after its current iteration")
    add_connection(p)
    p.add_argument("assignment", type=int)
    return exitcodes.document(parser)


COMMANDS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "submit": assignments.submit,
    "status": assignments.status,
    "results": assignments.results,
    "cancel": assignments.cancel,
    "deploy": lambda args: deploy.deploy(args, connect),
    "rollback": lambda args: deploy.rollback(args, connect),
    "versions": lambda args: deploy.versions(args, connect),
    "signals": lambda args: signals.signals(args, connect),
    "plot": lambda args: export.plot(args, connect),
}


def _json_error(args: argparse.Namespace, reason: str, code: str) -> None:
    """Under --json a failure is also a JSON object on stdout, for scripts that parse it."""
    if getattr(args, "json", False):
        print(json.dumps(error_shape(args.command, reason, code)), flush=True)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "server":
            return server_cli.run(args)
        if args.command == "check":
            return check.check(args)
        if args.command in admin_cli.COMMANDS:
            return admin_cli.COMMANDS[args.command](args)
        setup_logging("warning")
        return asyncio.run(COMMANDS[args.command](args))
    except RequestFailed as exc:
        _json_error(args, str(exc.reason), exc.code or "refused")
        print(f"oodida {args.command}: refused: {exc.reason}", file=sys.stderr)
        return 1
    except (UsageError, CredentialFileError, ArgumentError, SpecError, ConfigurationError) as exc:  # usage, config
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
