"""Analysts' modules on the server: checked at submit, run off board in the sandbox.

The server never runs a module in its own process: off-board code goes to a sandbox
worker (one, long-lived, started on first use) through the supervisor, which
enforces the time budget and replaces a worker that breaks. What a module did wrong
comes back as a `Violation` naming the rule, for the iteration's report.
"""

from __future__ import annotations

import ast
import hashlib
import logging
from typing import Any

from sandbox.errors import PolicyError, Problem, Rule, Violation
from sandbox.policy import check_source
from sandbox.supervisor import SandboxLimits, Supervisor
from wire.messages import AssignmentSpec, ModuleSource

log = logging.getLogger(__name__)


def module_hash(module: ModuleSource) -> str:
    """The content hash a module is known by (and that results carry)."""
    return hashlib.sha256(module.source.encode()).hexdigest()


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
    """Runs off-board modules in one sandbox worker, started when first needed."""

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.supervisor: Supervisor | None = None
        self._loaded: set[str] = set()

    async def _ready(self) -> Supervisor:
        if self.supervisor is None:
            supervisor = Supervisor(self.limits)
            layers = await supervisor.start()
            for layer in layers:
                if not layer.applied:
                    log.warning("sandbox layer %s not applied: %s", layer.name, layer.detail)
            self.supervisor = supervisor
        return self.supervisor

    async def off_board(self, module: ModuleSource, results: dict[str, Any], params: Any, state: Any) -> Any:
        supervisor = await self._ready()
        try:
            digest = await supervisor.load(module.source, module.name)
        except PolicyError as exc:
            raise Violation(exc.problems[0].rule, str(exc)) from None
        outcome = await supervisor.call(digest, "off_board", results=results, params=params, state=state)
        if not outcome.ok:
            assert outcome.rule is not None
            raise Violation(outcome.rule, outcome.message or "", outcome.line)
        return outcome.value

    async def close(self) -> None:
        if self.supervisor is not None:
            await self.supervisor.close()
