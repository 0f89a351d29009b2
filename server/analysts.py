"""The analysts' room: requests in, replies out, results streamed.

Each request is answered in a task of its own (a results stream may last as long as
its assignment), at most `[limits] max_requests` at once per connection. A request the
server cannot do gets an `error` naming it by id, with the reason: refused (a submit
or deploy the server will not run), not found, or internal. Readers are served here
too: the protocol lets only their reads through.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from oodida.analytics import registry
from oodida.analytics.base import MethodError
from oodida.core.signing import Trust
from oodida.link import Channel, ChannelError
from oodida.sandbox.supervisor import source_hash
from oodida.server.catalogue import Catalogue
from oodida.server.config import ServerConfig
from oodida.server.credentials import Credentials
from oodida.server.deploys import Deployer, DeployRefused
from oodida.server.modules import OffBoardRunner, check_spec_modules, fit, refusal
from oodida.server.reports import build_report
from oodida.server.runner import AssignmentRunner
from oodida.server.storage import Store
from oodida.server.vehicles import VehicleRoom
from oodida.server.versions import version_table
from oodida.wire import Role
from oodida.wire.messages import (
    AssignmentInfo,
    Cancel,
    Cancelled,
    Deploy,
    Error,
    ErrorCode,
    Message,
    OpenIterationInfo,
    ResultsEnd,
    ResultsRequest,
    SignalsRequest,
    StatusReply,
    StatusRequest,
    Submit,
    Submitted,
    VehicleInfo,
    VersionsReply,
    VersionsRequest,
)
from oodida.wire.states import ASSIGNMENT, AssignmentEvent, AssignmentState

log = logging.getLogger(__name__)


class SubmitRefused(Exception):
    """An assignment the server cannot run; the message is the reason for the analyst."""


class AnalystRoom:
    """Answers analysts. `runners` is the server's table of running assignments: a
    submit adds one, its end (`publish`) takes it out; `fleet` is the vehicles' room,
    which the runners send through and which says who is connected."""

    def __init__(
        self,
        config: ServerConfig,
        store: Store,
        credentials: Credentials,
        catalogue: Catalogue,
        fleet: VehicleRoom,
        runners: dict[int, AssignmentRunner],
        off_board: OffBoardRunner,
        trust: Trust,
        deployer: Deployer,
        *,
        database_failed: Callable[[BaseException], bool],
    ) -> None:
        self.config = config
        self.store = store
        self.credentials = credentials
        self.catalogue = catalogue
        self.fleet = fleet
        self.runners = runners
        self.off_board = off_board
        self.trust = trust
        self.deployer = deployer
        self.database_failed = database_failed
        self._subscribers: dict[int, set[asyncio.Queue[tuple[str, Any]]]] = {}

    async def serve(self, channel: Channel, analyst: str) -> None:
        requests: set[asyncio.Task[None]] = set()
        refused_any = False
        try:
            async for message in channel.messages():
                if isinstance(message, Error):
                    log.info("analyst %s reports: %r", analyst, message.reason)
                    continue
                if len(requests) >= self.config.limits.max_requests:
                    # each request holds its reply until the analyst reads it: unbounded,
                    # an analyst that sends and never reads would grow the server for ever
                    limit = self.config.limits.max_requests
                    if not refused_any:  # once per connection: a flood of requests is no flood of logs
                        log.info("analyst %s has %d requests in flight; refusing more", analyst, limit)
                        refused_any = True
                    await channel.send(Error(
                        reason=f"too many requests in flight: {limit} at most; wait for answers",
                        code=ErrorCode.REFUSED, id=getattr(message, "id", None),
                    ))
                    continue
                task = asyncio.create_task(self._answer(channel, analyst, message))
                requests.add(task)
                task.add_done_callback(requests.discard)
        finally:
            for task in requests:
                task.cancel()

    async def _answer(self, channel: Channel, analyst: str, message: Message) -> None:
        request = getattr(message, "id", None)
        try:
            if isinstance(message, Submit):
                problems = await check_spec_modules(message.spec)  # off the event loop: see sandbox/check.py
                if problems:
                    raise SubmitRefused(refusal("the module breaks the sandbox policy:", problems))
                await channel.send(self.submit(message, analyst))
            elif isinstance(message, StatusRequest):
                await channel.send(self.status(message.id))
            elif isinstance(message, ResultsRequest):
                await self._stream_results(channel, message)
            elif isinstance(message, Cancel):
                await channel.send(self.cancel(message, analyst))
            elif isinstance(message, Deploy):
                async for reply in self.deployer.deploy(message, analyst, self.runners.get(message.assignment)):
                    await channel.send(reply)
            elif isinstance(message, VersionsRequest):
                await channel.send(self.versions(message))
            elif isinstance(message, SignalsRequest):
                await channel.send(self.catalogue.reply(message, self.fleet.sessions))
        except (SubmitRefused, DeployRefused) as exc:
            await channel.send(Error(reason=fit(str(exc)), code=ErrorCode.REFUSED, id=request))
        except LookupError as exc:
            await channel.send(Error(reason=str(exc.args[0]), code=ErrorCode.NOT_FOUND, id=request))
        except ChannelError:
            pass
        except Exception as exc:
            if self.database_failed(exc):
                reason = "the server's database is corrupt; the server is stopping"
            else:
                log.exception("request %r of analyst %s failed", message, analyst)
                reason = f"internal error: {exc}"[:4000]
            try:
                await channel.send(Error(reason=reason, code=ErrorCode.INTERNAL, id=request))
            except ChannelError:
                pass

    def submit(self, message: Submit, analyst: str) -> Submitted:
        spec = message.spec
        try:
            if spec.methods:
                registry.check(spec.methods, spec.params, spec.signals)
        except MethodError as exc:
            raise SubmitRefused(str(exc)) from None
        for side, module in (("on_board", spec.on_board_module), ("off_board", spec.off_board_module)):
            problem = None if module is None else self.trust.problem(module, side)
            if problem is not None:
                raise SubmitRefused(problem)
        sessions = self.fleet.sessions
        connected = sorted(sessions)
        if spec.vehicles is None:
            if not connected:
                raise SubmitRefused("no vehicle is connected")
            vehicles = connected
        elif isinstance(spec.vehicles, int):
            if len(connected) < spec.vehicles:
                raise SubmitRefused(f"{spec.vehicles} vehicles asked for, {len(connected)} connected")
            vehicles = connected[: spec.vehicles]
        else:
            vehicles = list(spec.vehicles)
            offline = [v for v in vehicles if v not in sessions]
            unknown = self._cannot_connect(offline)
            if unknown:  # they would never answer: the assignment would wait out every deadline
                raise SubmitRefused(
                    f"{len(unknown)} of the vehicles named cannot connect: {'; '.join(unknown)} "
                    "(oodida credentials list shows who can)"
                )
            if len(offline) == len(vehicles):
                raise SubmitRefused(f"none of the vehicles is connected: {', '.join(offline)}")
        missing = self.catalogue.refusal(spec.signals, vehicles)
        if missing is not None:
            raise SubmitRefused(missing)
        assignment = self.store.create_assignment(spec, vehicles)
        for side, module in (("on_board", spec.on_board_module), ("off_board", spec.off_board_module)):
            if module is not None:
                code_hash = source_hash(module.source)
                self.store.add_module(code_hash, module.name, module.source)
                self.store.add_signed_deployment(assignment, side, code_hash, "submit", analyst, None, module)
                signed = "" if module.signer is None else f", signed by key {module.signer}"
                self.store.audit(analyst, "submit", assignment, f"{side} {module.name} {code_hash}{signed}")
        runner = AssignmentRunner(self.fleet, self.store, assignment, spec, vehicles, self.off_board)
        self.runners[assignment] = runner
        runner.start()
        log.info("analyst %s submitted assignment %d for %d vehicles", analyst, assignment, len(vehicles))
        return Submitted(id=message.id, assignment=assignment, vehicles=vehicles)

    def _cannot_connect(self, vehicles: list[str]) -> list[str]:
        """Each of `vehicles` that has no usable vehicle credential, with why. Only the
        offline ones are asked: a connected vehicle proved its credential. Offline
        vehicles with a credential are fine: they answer when they connect."""
        problems = []
        now = time.time()
        for vehicle in vehicles:
            credential = self.credentials.get(vehicle)
            if credential is None:
                problems.append(f"{vehicle} (no credential)")
            elif (problem := credential.problem(Role.VEHICLE, now)) is not None:
                problems.append(f"{vehicle} ({problem})")
        return problems

    def status(self, request: int) -> StatusReply:
        vehicles = [
            VehicleInfo(vehicle=s.vehicle, connected_at=s.connected_at, address=s.channel.peer, status=s.status)
            for s in sorted(self.fleet.sessions.values(), key=lambda s: s.vehicle)
        ]
        assignments = [
            AssignmentInfo(
                assignment=row.id,
                name=row.name,
                state=row.state,
                iterations=row.spec.iterations,
                completed=self.store.completed_iterations(row.id),
                vehicles=row.vehicles,
                created=row.created,
                reason=row.reason,
                **_bad_iterations(self.store.iteration_counts(row.id)),
                open=self._open_iteration(row.id),
            )
            for row in self.store.assignments()
        ]
        return StatusReply(
            id=request, server_time=time.time(), vehicles=vehicles, assignments=assignments,
            pid=os.getpid(), sandbox=self.off_board.info(),
        )

    def _open_iteration(self, assignment: int) -> OpenIterationInfo | None:
        """How far the iteration under way has come, for the analysts' progress bars."""
        runner = self.runners.get(assignment)
        it = runner.current if runner is not None else None
        if it is None:
            return None
        return OpenIterationInfo(
            iteration=it.number, answered=len(it.answers), asked=len(it.selected), quorum=it.quorum,
            deadline_in=min(max(0.0, it.deadline_at - time.monotonic()), 10**7),
        )

    def versions(self, message: VersionsRequest) -> VersionsReply:
        row = self.store.assignment(message.assignment)
        if row is None:
            raise LookupError(f"no assignment {message.assignment}")
        table = version_table(
            self.store.deployments(row.id), self.store.module_acks(row.id), self.store.served(row.id), row.vehicles,
            self.store.deployment_signers(row.id),
        )
        return VersionsReply(id=message.id, assignment=row.id, versions=table)

    def cancel(self, message: Cancel, analyst: str = "analyst") -> Cancelled:
        row = self.store.assignment(message.assignment)
        if row is None:
            raise LookupError(f"no assignment {message.assignment}")
        runner = self.runners.get(message.assignment)
        if runner is not None:
            # on disk before the answer: a server killed before the iteration closes
            # must not resume an assignment the analyst was told is cancelled
            self.store.audit(analyst, "cancel", message.assignment, "asked to cancel the running assignment")
            runner.cancel()
            state = ASSIGNMENT.next(AssignmentState.RUNNING, AssignmentEvent.CANCEL)
        else:
            state = row.state
        return Cancelled(id=message.id, assignment=message.assignment, state=state)

    # --- result streams -------------------------------------------------------------------

    def publish(self, assignment: int, event: tuple[str, Any]) -> None:
        """A runner's news to the streams that follow its assignment; at its "end"
        the assignment leaves the table of running ones."""
        for queue in self._subscribers.get(assignment, ()):
            queue.put_nowait(event)
        if event[0] == "end":
            self.runners.pop(assignment, None)

    async def _stream_results(self, channel: Channel, request: ResultsRequest) -> None:
        row = self.store.assignment(request.assignment)
        if row is None:
            raise LookupError(f"no assignment {request.assignment}")
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        subscribers = self._subscribers.setdefault(request.assignment, set())
        subscribers.add(queue)  # before reading the store, so nothing falls in between
        try:
            sent = request.since
            for it in self.store.iterations(request.assignment, since=sent):
                await channel.send(build_report(self.store, row.spec, it, request.id))
                sent = it.iteration
            running = request.assignment in self.runners
            while request.follow and running:
                kind, _ = await queue.get()
                for it in self.store.iterations(request.assignment, since=sent):
                    await channel.send(build_report(self.store, row.spec, it, request.id))
                    sent = it.iteration
                running = kind != "end"
            final = self.store.assignment(request.assignment)
            assert final is not None
            await channel.send(
                ResultsEnd(id=request.id, assignment=request.assignment, state=final.state,
                           reason=final.reason)
            )
        finally:
            subscribers.discard(queue)
            if not subscribers:
                self._subscribers.pop(request.assignment, None)


def _bad_iterations(counts: dict[str, int]) -> dict[str, int]:
    """The partial and failed counts `oodida status` shows beside the completed ones."""
    return {"partial": counts.get("partial", 0), "failed": counts.get("failed", 0)}


__all__ = ["AnalystRoom", "SubmitRefused"]
