"""The off-board step of an iteration, whoever computes it: one face for the runner.

As a Flower strategy's `aggregate_fit` is the same call for the built-in FedAvg and
for a user's strategy, the runner calls `OffBoard.off_board` on the answers it kept
and gets the fleet result and the state for the next task, without knowing whether
the built-in methods (`oodida.analytics`, in a thread) or an analyst's module (the
assignment's sandbox worker) computed them. Which one an assignment has is fixed at
submit (a deploy replaces a module's version, never a built-in by a module); which
*version* of a module, by the iteration: `off_board_step` builds the step for it.

The protocol lives here, not in `oodida.analytics`: its only caller is the server's
runner, and its sandboxed side needs `oodida.sandbox`, which analytics may not import.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from oodida.analytics import registry
from oodida.analytics.arrays import from_wire, to_wire
from oodida.server.modules import OffBoardRunner
from oodida.wire.messages import AssignmentSpec, ModuleSource


class OffBoard(Protocol):
    """The hook the runner drives at an iteration's close. Values come and go in wire
    form (as stored and sent): each step converts what it reads, so a step that reads
    nothing converts nothing."""

    async def off_board(
        self, partials: Mapping[str, Any], params: Mapping[str, Any], state: Any
    ) -> tuple[Any, Any]:
        """(the fleet result, the state the vehicles get with the next task) from the
        vehicles' successful answers; raises why the step failed."""
        ...


class BuiltinOffBoard:
    """The built-in methods' off-board halves, merged in a thread so the loop goes on."""

    def __init__(self, methods: list[str]) -> None:
        self.methods = methods

    async def off_board(
        self, partials: Mapping[str, Any], params: Mapping[str, Any], state: Any
    ) -> tuple[Any, Any]:
        # converted here, on the loop, as before this class: in the thread, the conversion of
        # a large fleet's partials competes for the GIL with the loop's acknowledgements
        results = {vehicle: from_wire(partial) for vehicle, partial in partials.items()}
        fleet, following = await asyncio.to_thread(
            registry.run_off_board, self.methods, results, params, from_wire(state)
        )
        return to_wire(fleet), (state if following is None else to_wire(following))  # none iterative: it stays


class NoOffBoard:
    """An assignment without an off-board step (`off_board: none`, or an on-board module
    alone): no fleet result, the state stays."""

    async def off_board(
        self, partials: Mapping[str, Any], params: Mapping[str, Any], state: Any
    ) -> tuple[Any, Any]:
        return None, state


class SandboxedOffBoard:
    """One version of an analyst's off-board module, run in the assignment's own
    sandbox worker; what it returns is both the fleet result and the next state."""

    def __init__(self, modules: OffBoardRunner | None, module: ModuleSource, assignment: int) -> None:
        self.modules = modules
        self.module = module
        self.assignment = assignment

    async def off_board(
        self, partials: Mapping[str, Any], params: Mapping[str, Any], state: Any
    ) -> tuple[Any, Any]:
        if self.modules is None:
            raise RuntimeError("this server runs no off-board modules")
        results = {vehicle: from_wire(partial) for vehicle, partial in partials.items()}
        fleet = to_wire(
            await self.modules.off_board(self.module, results, params, from_wire(state), assignment=self.assignment)
        )
        return fleet, fleet


def off_board_step(
    spec: AssignmentSpec, module: ModuleSource | None, modules: OffBoardRunner | None, assignment: int
) -> OffBoard:
    """The step of an iteration that keeps off-board version `module` (None: the
    assignment has no off-board module)."""
    if module is not None:
        return SandboxedOffBoard(modules, module, assignment)
    if spec.off_board == "fleet" and spec.methods:
        return BuiltinOffBoard(spec.methods)
    return NoOffBoard()
