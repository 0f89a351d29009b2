"""Analysts' modules on the vehicle: checked again here, run only in the sandbox.

The agent trusts no module because the server sent it: each is compiled under the
same policy in the sandbox worker (and refused with the reasons), keyed by its
content hash, and run there with the window passed through shared memory. The
agent's own process never executes a line of it.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from agent.store import Window
from sandbox.errors import PolicyError, Violation
from sandbox.supervisor import SandboxLimits, Supervisor
from wire.messages import ModuleSource

log = logging.getLogger(__name__)


def module_hash(module: ModuleSource) -> str:
    return hashlib.sha256(module.source.encode()).hexdigest()


class ModuleRunner:
    """One long-lived sandbox worker for this agent, started when a module first runs."""

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.supervisor: Supervisor | None = None

    async def _ready(self) -> Supervisor:
        if self.supervisor is None:
            supervisor = Supervisor(self.limits)
            layers = await supervisor.start()
            missing = [layer for layer in layers if not layer.applied]
            for layer in missing:
                log.warning("sandbox layer %s not applied on this host: %s", layer.name, layer.detail)
            log.info(
                "sandbox worker %s started with %d of %d layers", supervisor.pid, len(layers) - len(missing), len(layers)
            )
            self.supervisor = supervisor
        return self.supervisor

    async def on_board(self, module: ModuleSource, window: Window, params: Any, state: Any) -> tuple[Any, list[str]]:
        """The module's value for this window and its flags (NaN/inf found); raises
        `Violation` naming the rule it broke."""
        supervisor = await self._ready()
        try:
            digest = await supervisor.load(module.source, module.name)
        except PolicyError as exc:
            raise Violation(exc.problems[0].rule, str(exc)) from None
        arrays = {name: (s.t, s.v) for name, s in window.series.items()}
        outcome = await supervisor.call(digest, "on_board", window=arrays, params=params, state=state)
        if not outcome.ok:
            assert outcome.rule is not None
            raise Violation(outcome.rule, outcome.message or "", outcome.line)
        return outcome.value, list(outcome.flags)

    async def close(self) -> None:
        if self.supervisor is not None:
            await self.supervisor.close()
            self.supervisor = None
