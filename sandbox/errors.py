"""What can go wrong with an analyst's module, named so the analyst can act on it.

Every refusal carries a `Rule` (the name an analyst sees in results: "timeout",
"forbidden import", ...), a message that says what exactly, and where known the line
of their module. Compile-time findings are a list (`PolicyError.problems`), so
`oodida check` can show them all at once; a run-time breach is one `Violation`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from oodida.core.errors import OodidaError


class Rule(enum.StrEnum):
    SYNTAX = "syntax"
    FORBIDDEN_IMPORT = "forbidden import"
    FORBIDDEN_ATTRIBUTE = "forbidden attribute"
    FORBIDDEN_NAME = "forbidden name"
    FORBIDDEN_SYNTAX = "forbidden syntax"
    MISSING_ENTRY = "missing entry point"
    MODULE_TOO_LARGE = "module too large"  # over the policy check's budget
    DISALLOWED_RETURN = "disallowed return type"
    RESULT_TOO_LARGE = "result too large"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    CRASH = "crash"
    ERROR = "error"  # the module raised an ordinary exception


@dataclass(frozen=True)
class Problem:
    rule: Rule
    message: str
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.rule.value}: {self.message}"


class SandboxError(OodidaError):
    """The sandbox itself failed (worker would not start, pipe broke)."""


class PolicyError(SandboxError):
    """A module refused before it ran; `problems` lists every finding."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


class Violation(SandboxError):
    """A module broke a rule while running."""

    def __init__(self, rule: Rule, message: str, line: int | None = None) -> None:
        where = f" (line {line})" if line is not None else ""
        super().__init__(f"{rule.value}: {message}{where}")
        self.rule = rule
        self.message = message
        self.line = line
