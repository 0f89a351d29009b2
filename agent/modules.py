"""Analysts' modules on the vehicle: checked again here, run only in the sandbox.

The agent trusts no module because the server sent it: each is compiled under the
same policy in the sandbox worker (and refused with the reasons), keyed by its
content hash, and run there with the window passed through shared memory. The
agent's own process never executes a line of it.
"""

from __future__ import annotations

from typing import Any

from agent.store import Window
from sandbox.supervisor import SandboxLimits, Supervisor, run_entry
from wire.messages import ModuleSource


class ModuleRunner:
    """One long-lived sandbox worker for this agent, started when a module first runs
    (the supervisor logs any layer the host cannot apply)."""

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.supervisor: Supervisor | None = None

    async def on_board(self, module: ModuleSource, window: Window, params: Any, state: Any) -> tuple[Any, list[str]]:
        """The module's value for this window and its flags (NaN/inf found); raises
        `Violation` naming the rule it broke."""
        if self.supervisor is None:
            self.supervisor = Supervisor(self.limits)
        arrays = {name: (s.t, s.v) for name, s in window.series.items()}
        outcome = await run_entry(
            self.supervisor, module.source, module.name, "on_board", window=arrays, params=params, state=state
        )
        return outcome.value, list(outcome.flags)

    async def close(self) -> None:
        if self.supervisor is not None:
            await self.supervisor.close()
            self.supervisor = None
