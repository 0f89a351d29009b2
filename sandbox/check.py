"""`oodida check`: the policy the vehicles apply, run on the analyst's own machine."""

from __future__ import annotations

from pathlib import Path

from sandbox.errors import Problem, Rule
from sandbox.policy import check_source


def check_file(path: str | Path) -> list[Problem]:
    path = Path(path)
    try:
        source = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem(Rule.SYNTAX, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")]
    return check_source(source, path.name)


def format_problems(path: str | Path, problems: list[Problem]) -> str:
    return "\n".join(f"{path}:{p.line or 0}: {p.rule.value}: {p.message}" for p in problems)
