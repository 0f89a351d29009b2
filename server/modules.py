"""Analysts' modules on the server: checked at submit, run off board in the sandbox.

The server never runs a module in its own process: off-board code goes to the
assignment's own sandbox worker (forked from the server's zygote on first use,
never shared with another assignment) through its supervisor, which
enforces the time budget and replaces a worker that breaks. What a module did wrong
comes back as a `Violation` naming the rule, for the iteration's report.
"""

from __future__ import annotations

import ast
from typing import Any

from sandbox.errors import Problem, Rule
from sandbox.policy import check_source
from sandbox.host import SandboxHost
from wire.messages import AssignmentSpec, ModuleSource, SandboxInfo

def defines(source: str, entry: str) -> bool:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.FunctionDef) and node.name == entry for node in tree.body)


def check_module(module: ModuleSource, entry: str) -> list[str]:
    """Every problem of one module that must define `entry`, as lines for the analyst."""
    found = list(check_source(module.source, module.name))
    if not found and not defines(module.source, entry):
        found.append(Problem(Rule.MISSING_ENTRY, f"{module.name} does not define {entry}(...)"))
    return [f"{module.name}: {p}" for p in found]


def check_spec_modules(spec: AssignmentSpec) -> list[str]:
    """Every problem of the assignment's modules, as lines for the analyst."""
    problems: list[str] = []
    for module, entry in ((spec.on_board_module, "on_board"), (spec.off_board_module, "off_board")):
        if module is not None:
            problems.extend(check_module(module, entry))
    return problems


class OffBoardRunner(SandboxHost):
    """The server's sandbox workers for off-board modules (and for the migrate hook of
    deployed versions): one per assignment."""

    async def off_board(
        self, module: ModuleSource, results: dict[str, Any], params: Any, state: Any, *, assignment: int
    ) -> Any:
        outcome = await self.run(module.source, module.name, "off_board", assignment=assignment, results=results,
                                 params=params, state=state)
        return outcome.value

    async def migrate(self, module: ModuleSource, old_state: Any, *, assignment: int) -> Any:
        """The state as the new version wants it: its migrate(old_state)."""
        outcome = await self.run(module.source, module.name, "migrate", assignment=assignment, state=old_state)
        return outcome.value

    def info(self) -> SandboxInfo | None:
        stats = self.stats()
        return None if stats is None else SandboxInfo(**stats)
