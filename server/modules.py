"""Analysts' modules on the server: checked at submit, run off board in the sandbox.

The server never runs a module in its own process: off-board code goes to the
assignment's own sandbox worker (forked from the server's zygote on first use,
never shared with another assignment) through its supervisor, which
enforces the time budget and replaces a worker that breaks. What a module did wrong
comes back as a `Violation` naming the rule, for the iteration's report.
"""

from __future__ import annotations

from typing import Any

from oodida.core.text import inert
from oodida.sandbox.check import check_off_loop, summarise
from oodida.sandbox.errors import Problem, Rule
from oodida.sandbox.host import SandboxHost
from oodida.sandbox.policy import defines
from oodida.wire.messages import AssignmentSpec, ModuleSource, SandboxInfo


async def check_module(module: ModuleSource, entry: str) -> list[str]:
    """Every problem of one module that must define `entry`, as lines for the
    analyst: the sandbox policy and every return value that can never be sent,
    checked off the event loop (a large module must not stall other peers)."""
    found = list(await check_off_loop(module.source, module.name, returns=True))
    if not found and not defines(module.source, entry):
        found.append(Problem(Rule.MISSING_ENTRY, f"{module.name} does not define {entry}(...)"))
    return [inert(f"{module.name}: {p}") for p in found]


async def check_spec_modules(spec: AssignmentSpec) -> list[str]:
    """Every problem of the assignment's modules, as lines for the analyst."""
    problems: list[str] = []
    for module, entry in ((spec.on_board_module, "on_board"), (spec.off_board_module, "off_board")):
        if module is not None:
            problems.extend(await check_module(module, entry))
    return problems


def refusal(head: str, problems: list[str]) -> str:
    """A refusal's text within the protocol's limit, a long list cut with "and N more"."""
    return summarise(head, problems)


def fit(reason: str) -> str:
    """Any refusal's text within the protocol's 4,096 characters: its first line and
    as many of the others as fit, the rest counted."""
    first, *rest = reason.split("\n")
    return summarise(first, rest)


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
