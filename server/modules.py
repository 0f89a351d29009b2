"""Analysts' modules on the server: checked at submit, run off board in the sandbox.

The server never runs a module in its own process: off-board code goes to a sandbox
worker (one, long-lived, started on first use) through the supervisor, which
enforces the time budget and replaces a worker that breaks. What a module did wrong
comes back as a `Violation` naming the rule, for the iteration's report.
"""

from __future__ import annotations

import ast
from typing import Any

from sandbox.errors import Problem, Rule
from sandbox.policy import check_source
from sandbox.supervisor import SandboxLimits, Supervisor, run_entry
from wire.messages import AssignmentSpec, ModuleSource

def defines(source: str, entry: str) -> bool:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.FunctionDef) and node.name == entry for node in tree.body)


def check_spec_modules(spec: AssignmentSpec) -> list[str]:
    """Every problem of the assignment's modules, as lines for the analyst."""
    problems: list[str] = []
    for module, entry in ((spec.on_board_module, "on_board"), (spec.off_board_module, "off_board")):
        if module is None:
            continue
        found = list(check_source(module.source, module.name))
        if not found and not defines(module.source, entry):
            found.append(Problem(Rule.MISSING_ENTRY, f"{module.name} does not define {entry}(...)"))
        problems.extend(f"{module.name}: {p}" for p in found)
    return problems


class OffBoardRunner:
    """Runs off-board modules in one sandbox worker, started when first needed (the
    supervisor logs any layer the host cannot apply)."""

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.supervisor: Supervisor | None = None

    async def off_board(self, module: ModuleSource, results: dict[str, Any], params: Any, state: Any) -> Any:
        if self.supervisor is None:
            self.supervisor = Supervisor(self.limits)
        outcome = await run_entry(
            self.supervisor, module.source, module.name, "off_board", results=results, params=params, state=state
        )
        return outcome.value

    async def close(self) -> None:
        if self.supervisor is not None:
            await self.supervisor.close()
            self.supervisor = None
