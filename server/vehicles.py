"""The vehicles' room: one session per connected vehicle, and the `Fleet` port the
assignment runners send through.

In: results (acknowledged once stored, so the agent's outbox lets them go), module
acknowledgements of a deploy, status reports and signal catalogues. Out: whatever a
runner sends (the module version a vehicle must load, its task, a cancel), by way of
`send_to`, `send_many` and `cancel_tasks`. Which vehicle id may hold a connection when
two agents claim one is decided here too (`admit`), as the handshake's last step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from oodida.link import Channel, ChannelError
from oodida.server import metrics
from oodida.server.catalogue import Catalogue
from oodida.server.config import ServerConfig
from oodida.server.credentials import iso
from oodida.server.result_writer import ResultWriter
from oodida.server.runner import AssignmentRunner
from oodida.server.storage import Store
from oodida.wire import LocalProtocolError, Role
from oodida.wire.connection import encode_message
from oodida.wire.messages import (
    CancelTask,
    Error,
    ErrorCode,
    Hello,
    Message,
    ModuleAck,
    Result,
    ResultAck,
    SignalCatalogue,
    VehicleStatus,
)

log = logging.getLogger(__name__)


@dataclass
class VehicleSession:
    vehicle: str
    channel: Channel
    connected_at: float
    status: VehicleStatus | None = None
    heard: float = field(default_factory=time.monotonic)  # when it last sent anything
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    duplicates: int = 0  # connections as this vehicle refused while this one held it


class VehicleRoom:
    """The sessions of the connected vehicles and what goes to and from them; the
    runners' `Fleet` (server/runner.py). `runners` is the server's table of running
    assignments, shared with the analysts' room; `publish` takes a runner's news to
    whoever follows it (the analysts' result streams)."""

    def __init__(
        self,
        config: ServerConfig,
        store: Store,
        results: ResultWriter,
        catalogue: Catalogue,
        runners: Mapping[int, AssignmentRunner],
        *,
        publish: Callable[[int, tuple[str, Any]], None],
        database_failed: Callable[[BaseException], bool],
    ) -> None:
        self.config = config
        self.store = store
        self.results = results
        self.catalogue = catalogue
        self.runners = runners
        self.sessions: dict[str, VehicleSession] = {}
        self._publish = publish
        self._database_failed = database_failed
        self._ack_frames: dict[tuple[int, int], bytes] = {}

    def connected(self, vehicle: str) -> bool:
        return vehicle in self.sessions

    # --- the handshake's last word ------------------------------------------------------

    async def admit(self, hello: Hello, channel: Channel) -> str | None:
        """Why a vehicle that proved its credential may not connect now, or None.

        A second agent configured with the same id would otherwise mix two data
        streams under one name and, each dropping the other, reconnect for ever. With
        `duplicate_vehicle = "refuse"` the connection that holds the id keeps it while
        it is alive; the newcomer is told who holds it since when (logged here once
        per holding connection, and the holder is told once too). A holder silent for
        longer than `[limits] keepalive` (agents report every few seconds) is taken
        to be a dead connection the vehicle left behind (it changed networks), and the
        newcomer replaces it, as with "takeover"."""
        old = self.sessions.get(hello.identity) if hello.role is Role.VEHICLE else None
        if old is None or self.config.duplicate_vehicle == "takeover":
            return None
        if time.monotonic() - old.heard > self.config.limits.keepalive:
            return None
        try:  # a holder on its way out (its close not yet read) makes way at once
            await asyncio.wait_for(old.ended.wait(), 0.5)
            return None
        except TimeoutError:
            pass
        vehicle = hello.identity
        reason = (f"{vehicle} is already connected from {old.channel.peer} since {iso(old.connected_at)}; "
                  'two agents with one vehicle id? (duplicate_vehicle = "takeover" in server.toml lets the newest in)')
        old.duplicates += 1
        if old.duplicates == 1:
            log.warning("refused vehicle %s from %s: %s", vehicle, channel.peer, reason)
            notice = (f"another agent connected as {vehicle} from {channel.peer} and was refused: "
                      f"this connection holds the id (since {iso(old.connected_at)})")
            try:
                await old.channel.send(Error(reason=notice, code=ErrorCode.REFUSED))
            except ChannelError:
                pass
        else:
            log.debug("refused vehicle %s from %s again (%d times): already connected", vehicle, channel.peer,
                      old.duplicates)
        return reason

    # --- a session ----------------------------------------------------------------------

    async def serve(self, channel: Channel, vehicle: str) -> None:
        old = self.sessions.get(vehicle)
        if old is not None:
            silent = time.monotonic() - old.heard
            takeover = self.config.duplicate_vehicle == "takeover"
            why = "takeover" if takeover else f"the old one silent for {silent:.0f} s"
            log.warning("vehicle %s connected again from %s (%s); dropping its old connection from %s",
                        vehicle, channel.peer, why, old.channel.peer)
            try:
                await asyncio.wait_for(old.channel.send(Error(
                    reason=f"replaced by a new connection as {vehicle} from {channel.peer} ({why})",
                    code=ErrorCode.DUPLICATE)), 1.0)
            except (ChannelError, TimeoutError):
                pass
            await old.channel.close()
        session = VehicleSession(vehicle, channel, time.time())
        self.sessions[vehicle] = session
        try:
            for runner in list(self.runners.values()):
                # the version it should run first (it may have missed a deploy), then its task
                load = runner.load_for(vehicle)
                if load is not None:
                    await self.send_to(vehicle, load)
                task = runner.task_for(vehicle)
                if task is not None:
                    await self.send_to(vehicle, task)
            async for message in channel.messages():
                session.heard = time.monotonic()
                if isinstance(message, Result):
                    await self._on_result(session, message)
                elif isinstance(message, ModuleAck):
                    self._on_module_ack(vehicle, message)
                elif isinstance(message, VehicleStatus):
                    session.status = message
                elif isinstance(message, SignalCatalogue):
                    self.catalogue.update(vehicle, message)
                elif isinstance(message, Error):
                    # %r: a peer's newlines forge no log lines
                    log.warning("vehicle %s reports: %r", vehicle, message.reason)
        finally:
            session.ended.set()
            if self.sessions.get(vehicle) is session:
                del self.sessions[vehicle]
                log.info("vehicle %s disconnected", vehicle)

    async def _on_result(self, session: VehicleSession, result: Result) -> None:
        if result.vehicle != session.vehicle:
            await session.channel.send(
                Error(reason=f"vehicle {session.vehicle} may not send results of {result.vehicle}",
                      code=ErrorCode.UNEXPECTED)
            )
            return
        metrics.result_received()
        ack = ResultAck(assignment=result.assignment, iteration=result.iteration)
        runner = self.runners.get(result.assignment)
        if runner is not None:  # the common case: no database read per result
            selected = result.vehicle in runner.selected
        else:
            row = self.store.assignment(result.assignment)
            selected = row is not None and result.vehicle in row.vehicles
        if not selected:
            await session.channel.send(
                Error(
                    reason=f"assignment {result.assignment} has no place for a result of {result.vehicle}; dropped",
                    code=ErrorCode.NOT_FOUND,
                )
            )
            await session.channel.send(ack)  # so the vehicle stops resending it
            return
        on_time = runner is not None and runner.on_result(result)
        # stored with the others of this pass of the event loop; acknowledged only once committed
        if not await self.results.add(result, late=not on_time):
            log.debug("duplicate result %d/%d from %s", result.assignment, result.iteration, result.vehicle)
        channel = session.channel
        await channel.send_bytes(channel.conn.send(ack, encoded=self._ack_frame(ack)))

    def _ack_frame(self, ack: ResultAck) -> bytes:
        """The frame of an acknowledgement, encoded once per iteration, not per vehicle."""
        key = (ack.assignment, ack.iteration)
        frame = self._ack_frames.get(key)
        if frame is None:
            frame = self._ack_frames[key] = encode_message(ack, max_frame=self.config.max_frame)
            while len(self._ack_frames) > 64:
                del self._ack_frames[next(iter(self._ack_frames))]
        return frame

    def _on_module_ack(self, vehicle: str, ack: ModuleAck) -> None:
        runner = self.runners.get(ack.assignment)
        if runner is None or vehicle not in runner.selected:
            log.info("vehicle %s acknowledged %s for assignment %d, which it does not run; ignored",
                     vehicle, ack.code_hash[:12], ack.assignment)
            return
        if not ack.ok:
            log.warning("vehicle %s refused version %s of assignment %d: %r",
                        vehicle, ack.code_hash[:12], ack.assignment, ack.error)
        runner.on_module_ack(vehicle, ack)

    # --- what runners need (the Fleet protocol) -------------------------------------------

    async def send_to(self, vehicle: str, message: Message) -> bool:
        session = self.sessions.get(vehicle)
        if session is None:
            return False
        try:
            await session.channel.send(message)
            return True
        except ChannelError as exc:
            log.info("cannot send %s to %s: %s", type(message).__name__, vehicle, exc)
            return False

    async def send_many(self, messages: Mapping[str, Message]) -> list[str]:
        """Send each vehicle its message; returns the vehicles it could not reach.

        Each distinct message is encoded once (a task goes to the whole fleet), and
        written at once wherever the vehicle's socket takes it; only the vehicles
        whose send buffers are full are waited for, all together. A coroutine and a
        fresh encoding per vehicle cost more than the writes at ten thousand."""
        frames: dict[int, bytes] = {}
        unreached: list[str] = []
        slow: list[tuple[str, Channel, bytes]] = []
        for vehicle, message in messages.items():
            session = self.sessions.get(vehicle)
            if session is None:
                unreached.append(vehicle)
                continue
            frame = frames.get(id(message))
            if frame is None:
                frame = frames[id(message)] = encode_message(message, max_frame=self.config.max_frame)
            channel = session.channel
            try:
                data = channel.conn.send(message, encoded=frame)
            except LocalProtocolError as exc:  # e.g. the connection is closing
                log.info("cannot send %s to %s: %s", type(message).__name__, vehicle, exc)
                unreached.append(vehicle)
                continue
            if not channel.try_send_bytes(data):
                slow.append((vehicle, channel, data))
        if slow:
            outcomes = await asyncio.gather(*(ch.send_bytes(data) for _, ch, data in slow), return_exceptions=True)
            for (vehicle, _, _), outcome in zip(slow, outcomes, strict=True):
                if isinstance(outcome, ChannelError):
                    log.info("cannot send to %s: %s", vehicle, outcome)
                    unreached.append(vehicle)
                elif isinstance(outcome, BaseException):  # a bug: one vehicle's, not the fleet's
                    log.error("sending to %s failed", vehicle, exc_info=outcome)
                    unreached.append(vehicle)
        return unreached

    async def cancel_tasks(self, vehicles: list[str], assignment: int) -> None:
        for vehicle in vehicles:
            session = self.sessions.get(vehicle)
            if session is not None:
                try:
                    await session.channel.send(CancelTask(assignment=assignment))
                except ChannelError:
                    pass

    def publish(self, assignment: int, event: tuple[str, Any]) -> None:
        """A runner's news ("iteration" closed, "end"), for its followers."""
        self._publish(assignment, event)

    def database_failed(self, exc: BaseException) -> bool:
        """Whether `exc` is the database found corrupt (the server then stops); a
        runner that meets it suspends rather than fails its assignment."""
        return self._database_failed(exc)


__all__ = ["VehicleRoom", "VehicleSession"]
