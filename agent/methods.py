"""The on-board step of a task, whoever computes it: one face for the task runner.

As a Flower client's `fit` is the same call whatever the model, the task runner cuts
the window and calls `OnBoard.on_board` without knowing whether the built-in methods
(`oodida.analytics`, in a thread) or the version of an analyst's module that the task
bound (the assignment's sandbox worker) computes the answer. `OnBoardSteps.bind`
picks the step once per task: the version is fixed by the loads that arrived before
the task (`pin`, at its arrival), as `agent.versions` explains.

The protocol lives here, not in `oodida.analytics`: its only caller is the agent's
task runner, its window is the agent's (with the samples and times the result
reports), and its sandboxed side needs `oodida.sandbox`, which analytics may not
import. The server's `server/methods.py` is its off-board mirror.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from oodida.agent.modules import ModuleRunner
from oodida.agent.store import Window
from oodida.agent.versions import ModuleVersions, Version
from oodida.analytics import registry
from oodida.analytics.arrays import from_wire, to_wire
from oodida.core.errors import OodidaError
from oodida.wire.messages import BUILTIN_CODE_HASH, Task

NO_MODULE_HASH = "none"  # a module task on a vehicle that holds no version of the module

Pinned = asyncio.Task[Version | None] | None  # the loads a module task waits for


class NoModule(OodidaError):
    """A module task reached a vehicle that holds no version of the module."""


class OnBoard(Protocol):
    """The hooks the task runner drives. Values come and go in wire form (as the task
    brought them and the result carries them): each step converts what it reads."""

    @property
    def code_hash(self) -> str:
        """The code the result names (a module version's hash, or the built-ins')."""
        ...

    def ready(self) -> None:
        """Raise (an OodidaError saying why) what makes the task fail whatever the
        window, before the runner waits for one."""

    async def on_board(self, window: Window, params: Mapping[str, Any], state: Any) -> tuple[Any, list[str]]:
        """The partial for this window and the flags to report (NaN or infinities a
        module returned); raises why the step failed."""
        ...


class BuiltinOnBoard:
    """The built-in methods' on-board halves, in a thread so the link stays responsive."""

    code_hash = BUILTIN_CODE_HASH

    def __init__(self, methods: list[str]) -> None:
        self.methods = methods

    def ready(self) -> None:
        pass

    async def on_board(self, window: Window, params: Mapping[str, Any], state: Any) -> tuple[Any, list[str]]:
        # run_on_board reads the wire-form state itself
        value = await asyncio.to_thread(registry.run_on_board, self.methods, window.series, params, state)
        return to_wire(value), []


class MissingModule:
    """A module task on a vehicle that holds no version of the module: it fails at once."""

    code_hash = NO_MODULE_HASH

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def ready(self) -> None:
        raise NoModule(self.reason)

    async def on_board(self, window: Window, params: Mapping[str, Any], state: Any) -> tuple[Any, list[str]]:
        raise NoModule(self.reason)


class SandboxedOnBoard:
    """One version of an analyst's on-board module, run in the assignment's own worker."""

    def __init__(self, steps: OnBoardSteps, version: Version, assignment: int) -> None:
        self.steps = steps
        self.version = version
        self.assignment = assignment

    @property
    def code_hash(self) -> str:
        return self.version.code_hash

    def ready(self) -> None:
        pass

    async def on_board(self, window: Window, params: Mapping[str, Any], state: Any) -> tuple[Any, list[str]]:
        call = self.steps.modules.on_board(
            self.version.module, window, params, from_wire(state), assignment=self.assignment
        )
        value, flags = await self.steps.call_to_the_end(call)
        return to_wire(value), flags


class OnBoardSteps:
    """Which step each task runs, and the sandbox calls in flight (for `stop`)."""

    def __init__(self, modules: ModuleRunner, versions: ModuleVersions) -> None:
        self.modules = modules
        self.versions = versions
        self.calls: set[asyncio.Future[tuple[Any, list[str]]]] = set()  # sandbox calls in flight

    def pin(self, task: Task) -> Pinned:
        """At a task's arrival: the loads it must wait for (none for the built-ins)."""
        return None if task.module_hash is None else self.versions.pending(task.assignment)

    async def bind(self, task: Task, pinned: Pinned) -> OnBoard:
        """The task's step, once the loads `pin` captured are applied."""
        if task.module_hash is None:
            return BuiltinOnBoard(task.methods)
        version = await self.versions.bind(task.assignment, pinned)
        if version is not None:
            return SandboxedOnBoard(self, version, task.assignment)
        refused = self.versions.refused.get(task.assignment)
        return MissingModule(
            f"no version of assignment {task.assignment}'s module is loaded on this vehicle"
            f" (the server asked for {task.module_hash[:12]})" + (f"; {refused}" if refused else "")
        )

    async def call_to_the_end(self, call: Awaitable[tuple[Any, list[str]]]) -> tuple[Any, list[str]]:
        """A sandbox call that a cancelled task (`CancelTask`: the iteration closed
        without this vehicle) leaves running to its end, its answer dropped: stopping
        a worker mid-call means killing it, and a fresh one costs far more than the
        rest of a call, which its time budget bounds anyway."""
        job = asyncio.ensure_future(call)
        self.calls.add(job)
        job.add_done_callback(self.calls.discard)
        job.add_done_callback(lambda j: j.cancelled() or j.exception())  # retrieved, if nobody waits
        return await asyncio.shield(job)
