"""One long-lived sandbox worker per process, started when a module first needs it.

The agent (on-board modules) and the server (off-board modules) each hold one; both
load versions into the running worker, so replacing a module never starts a process
(the supervisor replaces a worker only when it breaks or nears its CPU budget).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.errors import PolicyError, Rule, Violation
from sandbox.supervisor import CallOutcome, SandboxLimits, Supervisor, run_entry


class SandboxHost:
    # An observer of every call's outcome (the server's and agent's metrics): "ok", or
    # the `Rule` value it broke ("timeout", "crash", "memory", "error", ...).
    on_event: Callable[[str], None] | None = None

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.supervisor: Supervisor | None = None

    def _supervisor(self) -> Supervisor:
        if self.supervisor is None:
            self.supervisor = Supervisor(self.limits)
        return self.supervisor

    async def load(self, source: str, name: str) -> tuple[str, frozenset[str]]:
        """Compile and load a version into the running worker: its hash and the entry
        points it defines. `Violation` naming the rule when the policy refuses it or
        its top level fails."""
        supervisor = self._supervisor()
        try:
            digest = await supervisor.load(source, name)
        except PolicyError as exc:
            raise Violation(exc.problems[0].rule, str(exc)) from None
        failure = supervisor.failure(digest)
        if failure is not None:
            raise Violation(failure.rule or Rule.ERROR, failure.message or "its top level failed", failure.line)
        return digest, supervisor.entries(digest)

    async def run(self, source: str, name: str, entry: str, **arguments: Any) -> CallOutcome:
        """Load if need be and call an entry point; `Violation` naming the rule broken."""
        try:
            outcome = await run_entry(self._supervisor(), source, name, entry, **arguments)
        except Violation as exc:
            if self.on_event is not None:
                self.on_event(exc.rule.value)
            raise
        if self.on_event is not None:
            self.on_event("ok")
        return outcome

    def stats(self) -> dict[str, Any] | None:
        """The worker as operators see it (pid, workers started, restarts, recycles,
        versions held); None before the first module."""
        s = self.supervisor
        if s is None:
            return None
        return {"pid": s.pid, "started": s.spawned, "restarts": s.restarts, "recycles": s.recycles,
                "modules": s.modules}

    def closing(self) -> None:
        """Shutting down: a call cut short now must not start a new worker."""
        if self.supervisor is not None:
            self.supervisor.closing()

    async def close(self) -> None:
        if self.supervisor is not None:
            await self.supervisor.close()
            self.supervisor = None
