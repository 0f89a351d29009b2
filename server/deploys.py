"""`oodida deploy` and `oodida rollback` on the server: replace a running
assignment's module, and tell the analyst, vehicle by vehicle, who runs it.

A deploy is checked before anything changes: the module must pass the sandbox policy
(here, and again in the server's own sandbox worker, where its top level runs) and
define the side's entry point, and a signature by a key the server knows must verify;
a rollback must name a version this assignment ran (it is sent with the signature
stored with it, which the vehicles check again).
A refused deploy changes nothing and is recorded in the audit log with the reason,
as is every accepted one. On board, the new version goes to the connected targets at
once and to the others when they reconnect; off board, it comes into force at the
next iteration boundary.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from oodida.core.signing import Trust
from oodida.core.text import inert
from oodida.sandbox.errors import Violation
from oodida.sandbox.supervisor import source_hash
from oodida.server import metrics
from oodida.server.modules import OffBoardRunner, check_module, refusal
from oodida.server.runner import AssignmentRunner
from oodida.server.storage import Store
from oodida.wire.messages import (
    Deploy,
    DeployAnswer,
    DeployEnd,
    Deploying,
    DeployProgress,
    LoadModule,
    Message,
    ModuleSource,
)

log = logging.getLogger(__name__)

SERVER_IDENTITY = "server"  # who acknowledges an off-board version


class DeployRefused(Exception):
    """A deploy or rollback the server will not carry out; the message says why."""


def deploy_quorum(quorum: int | float | None, targets: int, connected: int) -> int:
    """Acknowledgements a deploy waits for: all connected targets by default, else a
    count or a fraction of the targets."""
    if quorum is None:
        return connected
    if isinstance(quorum, float):
        return max(1, min(targets, math.ceil(quorum * targets - 1e-9)))
    return max(1, min(targets, quorum))


class Deployer:
    def __init__(
        self,
        store: Store,
        modules: OffBoardRunner,
        connected: Callable[[str], bool],
        send_to: Callable[[str, Message], Awaitable[bool]],
        trust: Trust | None = None,
    ) -> None:
        self.trust = trust or Trust({})  # analysts' keys the server knows: a bad signature is refused here
        self.store = store
        self.modules = modules
        self.connected = connected
        self.send_to = send_to

    async def deploy(self, request: Deploy, analyst: str, runner: AssignmentRunner | None) -> AsyncIterator[Message]:
        """The replies to a deploy, as they happen: `Deploying`, `DeployProgress`…,
        `DeployEnd`. Raises `DeployRefused` (nothing changed) before the first."""
        try:
            module, code_hash, rollback = await self._accept(request, runner)
        except DeployRefused as exc:
            self.store.audit(analyst, f"{'rollback' if request.module is None else 'deploy'} refused",
                             request.assignment, f"{request.side}: {exc}"[:4000])
            raise
        assert runner is not None
        kind = "rollback" if rollback else "deploy"
        self.store.add_module(code_hash, module.name, module.source)
        self.store.add_signed_deployment(request.assignment, request.side, code_hash, kind, analyst, request.vehicles,
                                         module)
        who = "all vehicles" if request.vehicles is None else ", ".join(request.vehicles)
        signed = "" if module.signer is None else f", signed by key {module.signer}"
        self.store.audit(
            analyst, kind, request.assignment, f"{request.side} {module.name} {code_hash} to {who}{signed}"
        )
        log.info("analyst %s: %s of %s %s (%s) to assignment %d, %s",
                 analyst, kind, request.side, module.name, code_hash[:12], request.assignment, who)
        started = time.monotonic()
        if request.side == "off_board":
            runner.versions.deploy_off_board(code_hash, module)
            yield Deploying(id=request.id, assignment=request.assignment, side=request.side, code_hash=code_hash,
                            name=module.name, rollback=rollback, vehicles=[SERVER_IDENTITY], offline=[])
            answer = DeployAnswer(vehicle=SERVER_IDENTITY, ok=True, elapsed=time.monotonic() - started)
            yield DeployProgress(id=request.id, answers=[answer])
            metrics.deploy_ended("off_board", True, time.monotonic() - started)
            yield DeployEnd(id=request.id, assignment=request.assignment, code_hash=code_hash,
                            acked=[SERVER_IDENTITY], refused={}, waiting=[], elapsed=time.monotonic() - started,
                            complete=True)
            return
        async for reply in self._on_board(request, runner, module, code_hash, rollback, started):
            yield reply

    async def _on_board(
        self, request: Deploy, runner: AssignmentRunner, module: ModuleSource, code_hash: str, rollback: bool,
        started: float,
    ) -> AsyncIterator[Message]:
        migrates = "migrate" in (await self.modules.load(module.source, module.name, assignment=request.assignment))[1]
        targets = runner.versions.deploy_on_board(code_hash, module, request.vehicles, migrates=migrates)
        online = [v for v in targets if self.connected(v)]
        offline = [v for v in targets if v not in online]
        need = deploy_quorum(request.quorum, len(targets), len(online))
        watch = runner.versions.watch(code_hash, targets)
        try:
            yield Deploying(id=request.id, assignment=request.assignment, side=request.side, code_hash=code_hash,
                            name=module.name, rollback=rollback, vehicles=online, offline=offline)
            message = LoadModule(assignment=request.assignment, code_hash=code_hash, module=module)
            sent = await asyncio.gather(*(self.send_to(v, message) for v in online))
            asked = {v for v, ok in zip(online, sent, strict=True) if ok}
            acked: list[str] = []
            refused: dict[str, str] = {}
            deadline = started + request.timeout
            while len(acked) < need and (asked - set(acked) - set(refused) or need > len(asked)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    answers = [await asyncio.wait_for(watch.answers.get(), remaining)]
                except TimeoutError:
                    break
                while not watch.answers.empty():  # what else came meanwhile goes in the same message
                    answers.append(watch.answers.get_nowait())
                now = time.monotonic() - started
                progress = []
                for answer in answers:
                    if answer.vehicle in acked or answer.vehicle in refused:
                        continue
                    asked.add(answer.vehicle)  # an offline target that came back and loaded it
                    if answer.ok:
                        acked.append(answer.vehicle)
                    else:
                        refused[answer.vehicle] = (answer.error or "refused")[:4096]
                    progress.append(DeployAnswer(vehicle=answer.vehicle, ok=answer.ok, error=answer.error, elapsed=now))
                if progress:
                    yield DeployProgress(id=request.id, answers=progress)
            waiting = [v for v in targets if v not in acked and v not in refused]
            metrics.deploy_ended("on_board", len(acked) >= need, time.monotonic() - started)
            yield DeployEnd(id=request.id, assignment=request.assignment, code_hash=code_hash, acked=acked,
                            refused=refused, waiting=waiting, elapsed=time.monotonic() - started,
                            complete=len(acked) >= need)
        finally:
            runner.versions.unwatch(watch)

    async def _accept(self, request: Deploy, runner: AssignmentRunner | None) -> tuple[ModuleSource, str, bool]:
        """The module to deploy, its hash, and whether it is a rollback; or why not."""
        if runner is None:
            row = self.store.assignment(request.assignment)
            if row is None:
                raise DeployRefused(f"no assignment {request.assignment}")
            raise DeployRefused(f"assignment {request.assignment} is {row.state}; only a running one can be changed")
        side = request.side
        if (runner.spec.on_board_module if side == "on_board" else runner.spec.off_board_module) is None:
            how = "built-in methods" if side == "on_board" else "the built-in fleet step"
            raise DeployRefused(
                f"assignment {request.assignment} computes {side.replace('_', ' ')} with {how}, not a module;"
                " only an analyst's module can be replaced"
            )
        if request.vehicles is not None:
            strangers = [v for v in request.vehicles if v not in runner.vehicles]
            if side == "off_board":
                raise DeployRefused("an off-board module runs on the server: --vehicles does not apply")
            if strangers:
                raise DeployRefused(f"not vehicles of assignment {request.assignment}: {', '.join(strangers)}")
        if request.module is not None:
            module, rollback = request.module, False
        else:
            assert request.code_hash is not None
            module, rollback = self._earlier_version(request.assignment, side, request.code_hash), True
        problem = self.trust.problem(module, side)
        if problem is not None:
            raise DeployRefused(f"{problem}; the running version stays")
        entry = "on_board" if side == "on_board" else "off_board"
        problems = await check_module(module, entry)
        if problems:
            raise DeployRefused(refusal("the module breaks the sandbox policy; the running version stays:", problems))
        try:  # its top level runs in the server's sandbox: a module that fails there fails everywhere
            entries = (await self.modules.load(module.source, module.name, assignment=request.assignment))[1]
        except Violation as exc:
            raise DeployRefused(f"{module.name} was refused by the sandbox; the running version stays: "
                                f"{inert(str(exc))}") from None
        if entry not in entries:
            raise DeployRefused(f"{module.name} does not define {entry}(...); the running version stays")
        return module, source_hash(module.source), rollback

    def _earlier_version(self, assignment: int, side: str, prefix: str) -> ModuleSource:
        hashes = sorted({d.code_hash for d in self.store.deployments(assignment) if d.side == side})
        found = [h for h in hashes if h.startswith(prefix)]
        if not found:
            known = ", ".join(h[:12] for h in hashes) or "none"
            raise DeployRefused(f"assignment {assignment} never ran a {side} version {prefix}… (its versions: {known})")
        if len(found) > 1:
            raise DeployRefused(
                f"{prefix} names {len(found)} versions ({', '.join(h[:12] for h in found)}); give more of the hash"
            )
        module = self.store.signed_module(found[0], side)  # with its signature, which the vehicles check again
        assert module is not None
        return module
