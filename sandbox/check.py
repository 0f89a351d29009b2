"""`oodida check`: the policy the vehicles apply, run on the analyst's own machine.

    $ oodida check mine.py
    mine.py:1: forbidden import: os is not allowed (allowed: math, numpy, statistics)
    mine.py:7: forbidden attribute: .tofile is not allowed: it reads or writes files
"""

from __future__ import annotations

from pathlib import Path

from sandbox.errors import Problem, Rule
from sandbox.policy import check_source


def check_file(path: str | Path) -> list[Problem]:
    """Every problem of the module at `path` under the sandbox policy; [] when none."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [Problem(Rule.SYNTAX, f"cannot read {path}: {exc.strerror or exc}")]
    try:
        source = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return [Problem(Rule.SYNTAX, f"the module is not UTF-8 text ({exc.reason})", line)]
    return check_source(source, path.name)


def format_problems(path: str | Path, problems: list[Problem]) -> str:
    """One line per problem, `FILE:LINE: RULE: MESSAGE` (no LINE where none is known)."""
    lines = []
    for p in problems:
        where = f"{path}:{p.line}" if p.line is not None else f"{path}"
        lines.append(f"{where}: {p.rule.value}: {p.message}")
    return "\n".join(lines)
