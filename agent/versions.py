"""Which version of each assignment's on-board module this vehicle runs.

Active-code replacement on the vehicle: the server sends `LoadModule`; the agent
checks it again (its hash, the sandbox policy, an `on_board` entry point), loads it
into the running sandbox worker (no process starts or stops) and acknowledges the
hash. A version that fails any check is refused with the reason and the previous
one stays in force.

Loads of one assignment are applied in the order they arrived, and a task binds the
version that was newest once every load received *before* the task was applied: an
iteration in flight finishes with the code it started with, the next one runs the
newest version acknowledged. Tasks never wait for loads that arrived after them.

With a signing policy (`[signing]` in the agent's config, `oodida.core.signing.Trust`),
the module's signature is checked before anything is loaded: a vehicle that
requires signatures runs nothing its trusted keys did not sign, whatever the server
sends. The last refusal of each assignment is kept, so a task that finds no version
loaded can say why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from oodida.agent.modules import ModuleRunner
from oodida.core.signing import Trust
from oodida.sandbox.errors import Violation
from oodida.sandbox.supervisor import source_hash
from oodida.wire.messages import LoadModule, ModuleAck, ModuleSource

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Version:
    code_hash: str
    module: ModuleSource


class ModuleVersions:
    def __init__(self, runner: ModuleRunner, trust: Trust | None = None) -> None:
        self.runner = runner
        self.trust = trust or Trust({})
        self.refused: dict[int, str] = {}  # assignment -> why its last refused version was refused
        self.current: dict[int, Version] = {}  # assignment -> newest acknowledged version
        self._tail: dict[int, asyncio.Task[Version | None]] = {}  # each assignment's last load

    def load(self, message: LoadModule) -> asyncio.Task[ModuleAck]:
        """Start applying a `LoadModule` now (in arrival order); the task's result is the
        acknowledgement to send."""
        assignment = message.assignment
        prev = self._tail.get(assignment)
        acked: asyncio.Future[ModuleAck] = asyncio.get_running_loop().create_future()
        tail = asyncio.create_task(self._apply(message, prev, acked), name=f"load-{assignment}")
        self._tail[assignment] = tail
        return asyncio.ensure_future(acked)

    def pending(self, assignment: int) -> asyncio.Task[Version | None] | None:
        """Capture, when a task arrives, the loads it must wait for (see `bind`)."""
        return self._tail.get(assignment)

    async def bind(self, assignment: int, pending: asyncio.Task[Version | None] | None) -> Version | None:
        """The version a task runs: the newest acknowledged once the loads captured
        with `pending` were applied; None when this vehicle holds none."""
        if pending is None:
            return self.current.get(assignment)
        return await asyncio.shield(pending)

    async def _apply(
        self, message: LoadModule, prev: asyncio.Task[Version | None] | None, acked: asyncio.Future[ModuleAck]
    ) -> Version | None:
        started = time.monotonic()
        assignment = message.assignment
        if prev is not None:
            try:
                await prev
            except BaseException:  # a cancelled or broken load before us changes nothing
                pass
        before = self.current.get(assignment)
        try:
            error = await self._check_and_load(message)
        except asyncio.CancelledError:
            if not acked.done():
                acked.cancel()
            raise
        ack = ModuleAck(
            assignment=assignment,
            code_hash=message.code_hash,
            ok=error is None,
            error=None if error is None else error[:4000],
            elapsed=time.monotonic() - started,
        )
        version: Version | None
        if error is None:
            version = Version(message.code_hash, message.module)
            self.current[assignment] = version
            self.refused.pop(assignment, None)
            if before is None or before.code_hash != version.code_hash:
                log.info(
                    "assignment %d: on-board module %s version %s loaded in %.1f ms",
                    assignment, message.module.name, message.code_hash[:12], ack.elapsed * 1000,
                )
        else:
            version = before
            self.refused[assignment] = f"it refused version {message.code_hash[:12]}: {error}"
            log.warning(
                "assignment %d: refused module %s version %s, keeping %s: %s",
                assignment, message.module.name, message.code_hash[:12],
                before.code_hash[:12] if before else "none", error,
            )
        if not acked.done():
            acked.set_result(ack)
        return version

    async def _check_and_load(self, message: LoadModule) -> str | None:
        """Why this vehicle refuses the module, or None once it is loaded."""
        module = message.module
        if source_hash(module.source) != message.code_hash:
            return f"{module.name}: its content does not match the hash {message.code_hash[:12]}… it was sent with"
        problem = self.trust.problem(module, "on_board")
        if problem is not None:  # before the sandbox sees a line of it
            return f"signature check failed: {problem}"
        try:
            digest, entries = await self.runner.load(module.source, module.name, assignment=message.assignment)
        except Violation as exc:
            return f"{module.name} refused on this vehicle: {exc}"
        except Exception as exc:  # the sandbox itself could not work: say so, keep the old version
            log.exception("loading %s failed", module.name)
            return f"{module.name} could not be loaded: {type(exc).__name__}: {exc}"
        if "on_board" not in entries:
            return f"{module.name} does not define on_board(window, params, state)"
        assert digest == message.code_hash
        return None
