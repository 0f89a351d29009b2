"""`oodida check`: an analyst's modules under the sandbox policy, before anything is
sent (no server needed)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from oodida.commands.connection import UsageError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("check", help="check modules under the sandbox policy (no server needed)")
    p.add_argument("modules", nargs="*", metavar="FILE.py")
    p.add_argument("--json", action="store_true")
    p.add_argument("--allowed", action="store_true", help="list what a module may import and call, and exit")


def check(args: argparse.Namespace) -> int:
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
