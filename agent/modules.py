"""Analysts' modules on the vehicle: checked again here, run only in the sandbox.

The agent trusts no module because the server sent it: each is compiled under the
same policy in the sandbox worker (and refused with the reasons), keyed by its
content hash, and run there with the window passed through shared memory. Each
assignment has its own worker process: no module sees another assignment's memory.
The agent's own process never executes a line of it.
"""

from __future__ import annotations

from typing import Any

from oodida.agent.store import Window
from oodida.sandbox.host import SandboxHost
from oodida.wire.messages import ModuleSource, SandboxInfo

TRIAL = 0  # assignment ids start at 1


class ModuleRunner(SandboxHost):
    """This agent's sandbox: a worker per assignment, forked from one zygote (the
    supervisor logs any layer the host cannot apply)."""

    async def on_board(
        self, module: ModuleSource, window: Window, params: Any, state: Any, *, assignment: int = TRIAL
    ) -> tuple[Any, list[str]]:
        """The module's value for this window and its flags (NaN/inf found), computed
        in the assignment's own worker; raises `Violation` naming the rule it broke.
        `TRIAL` (0, an id no server hands out): `oodida try`'s one module."""
        arrays = {name: (s.t, s.v) for name, s in window.series.items()}
        outcome = await self.run(module.source, module.name, "on_board", assignment=assignment, window=arrays,
                                 params=params, state=state)
        return outcome.value, list(outcome.flags)

    def info(self) -> SandboxInfo | None:
        stats = self.stats()
        return None if stats is None else SandboxInfo(**stats)
