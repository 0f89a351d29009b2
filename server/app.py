"""The off-board server: accepts vehicles and analysts, runs assignments.

One asyncio process. Every connection starts with the handshake; then a vehicle's
messages go to the assignment runners, an analyst's requests are answered. Nothing a
peer sends may end the process: bad messages get an `error` reply with the reason,
and an unauthenticated peer that misbehaves is disconnected.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from oodida.analytics import registry
from oodida.analytics.base import MethodError
from oodida.core.errors import OodidaError
from oodida.core.limits import raise_nofile_limit
from oodida.core.signing import Trust
from oodida.link import Channel, ChannelClosed, ChannelError
from oodida.link.keepalive import enable_keepalive
from oodida.link.tls import limit_tls_read_buffers, server_context
from oodida.sandbox.supervisor import SandboxLimits, source_hash
from oodida.server import metrics
from oodida.server.catalogue import Catalogue
from oodida.server.config import ServerConfig
from oodida.server.credentials import Credentials, iso
from oodida.server.dbcheck import DatabaseUnusable, check_database, corruption, describe
from oodida.server.deploys import Deployer, DeployRefused
from oodida.server.handshake import authenticate
from oodida.server.listen import ListenError, listen_problem
from oodida.server.modules import OffBoardRunner, check_spec_modules, fit, refusal
from oodida.server.reports import build_report
from oodida.server.result_writer import ResultWriter
from oodida.server.resume import resume_running
from oodida.server.revocation import Revoker
from oodida.server.runner import AssignmentRunner
from oodida.server.store import Store
from oodida.server.versions import version_table
from oodida.wire import Connection, LocalProtocolError, RemoteProtocolError, Role, Side, State
from oodida.wire.connection import encode_message
from oodida.wire.messages import (
    AssignmentInfo,
    Cancel,
    Cancelled,
    CancelTask,
    Deploy,
    Error,
    ErrorCode,
    Hello,
    Message,
    ModuleAck,
    OpenIterationInfo,
    Result,
    ResultAck,
    ResultsEnd,
    ResultsRequest,
    SignalCatalogue,
    SignalsRequest,
    StatusReply,
    StatusRequest,
    Submit,
    Submitted,
    VehicleInfo,
    VehicleStatus,
    VersionsReply,
    VersionsRequest,
)
from oodida.wire.states import ASSIGNMENT, AssignmentEvent, AssignmentState

log = logging.getLogger(__name__)

# Connections the kernel completes before we accept them (capped by net.core.somaxconn):
# asyncio's default of 100 drops the SYNs of a fleet reconnecting at once, and each
# dropped one retries a second or more later.
LISTEN_BACKLOG = 4096

def open_database(path: str, check: str = "quick") -> tuple[Store, Credentials]:
    """The store and the credentials on `path`, once `check_database` found it usable;
    any SQLite error on opening is one `DatabaseUnusable` sentence too."""
    existed = check_database(path, quick=check == "quick")
    try:
        store = Store(path)
        credentials = Credentials(path)
        known = credentials.db.execute("SELECT count(*) FROM credentials").fetchone()[0]
    except sqlite3.Error as exc:
        raise DatabaseUnusable(describe(path, exc)) from None
    if not existed:
        log.warning("database %s did not exist: started a new, empty one", path)
    if not known:
        log.warning("database %s holds no credentials: every handshake is refused until one is added "
                    "(oodida credentials add ID --role vehicle --config server.toml)", path)
    return store, credentials


@dataclass
class VehicleSession:
    vehicle: str
    channel: Channel
    connected_at: float
    status: VehicleStatus | None = None
    heard: float = field(default_factory=time.monotonic)  # when it last sent anything
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    duplicates: int = 0  # connections as this vehicle refused while this one held it


class ServerFailed(OodidaError):
    """The server stopped on its own, for a reason already logged (a database found
    corrupt while it ran); `oodida server` exits 1."""


class SubmitRefused(Exception):
    """An assignment the server cannot run; the message is the reason for the analyst."""


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store, self.credentials = open_database(config.database, config.database_check)
        self.revoker = Revoker(self.credentials, config.credential_check)
        self._revoker_task: asyncio.Task[None] | None = None
        self.results = ResultWriter(self.store)
        self._ack_frames: dict[tuple[int, int], bytes] = {}
        self.vehicles: dict[str, VehicleSession] = {}
        self.catalogue = Catalogue()  # each vehicle's signals, as it reported them
        self.runners: dict[int, AssignmentRunner] = {}
        self._subscribers: dict[int, set[asyncio.Queue[tuple[str, Any]]]] = {}
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._handshaking = 0  # connections between accept and the end of their handshake
        self._refused = 0  # connections refused over a limit, not yet logged
        self._lingering = 0  # refused connections reading out what their peers sent
        self._refused_logged_at = 0.0
        self.port: int | None = None
        self.failed: str | None = None  # why the server stops on its own (logged once)
        self._failed = asyncio.Event()
        sandbox = config.sandbox
        self.off_board = OffBoardRunner(
            SandboxLimits(call_timeout=sandbox.call_timeout, memory_mb=sandbox.memory_mb, uid=sandbox.uid,
                          max_workers=sandbox.max_workers)
        )
        self.trust = Trust.from_files(config.signing.known_keys)  # never requires: the vehicles decide
        self._metrics: metrics.Exporter | None = None  # the /metrics page, while serving
        self.deployer = Deployer(self.store, self.off_board, lambda v: v in self.vehicles, self.send_to, self.trust)

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._metrics = metrics.start(self, self.config.metrics)  # first: a taken port stops nothing half-started
        tls = self.config.tls
        context = None if tls is None else server_context(cert=tls.cert, key=tls.key, client_ca=tls.client_ca)
        if context is not None:
            limit_tls_read_buffers()  # 256 KiB a connection otherwise: 3 GiB at 10,000 vehicles
        host, port = self.config.listen.host, self.config.listen.port
        try:  # bound first, accepting later: a port in use stops us before anything is resumed
            self._server = await asyncio.start_server(
                self._on_connect, host, port, limit=64 * 1024, ssl=context,
                ssl_handshake_timeout=self.config.handshake_timeout if context is not None else None,
                backlog=LISTEN_BACKLOG, start_serving=False,
            )
        except OSError as exc:
            raise ListenError(listen_problem(host, port, exc)) from exc
        resumed = resume_running(self, self.store, self.off_board)  # before any vehicle can send a result
        self.runners.update(resumed)
        nofile = raise_nofile_limit()
        log.info("open files limit %d (a connection each)", nofile[0])
        await self._server.start_serving()
        self._revoker_task = asyncio.create_task(self.revoker.run(self.database_failed), name="revoker")
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        log.info("listening on %s:%d (%s), database %s", self.config.listen.host, self.port,
                 "plain TCP" if context is None else "TLS", self.config.database)
        for runner in resumed.values():
            runner.start()

    async def stop(self) -> None:
        if self._revoker_task is not None:
            self._revoker_task.cancel()
            await asyncio.gather(self._revoker_task, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        for runner in list(self.runners.values()):
            runner.suspend()  # a server stopping is not the assignment ending: the next one resumes it
        for task in list(self._connections):
            task.cancel()
        tasks = [r.task for r in self.runners.values() if r.task] + list(self._connections)
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        await self.off_board.close()
        metrics.stop(self._metrics)
        self.store.close()
        self.credentials.close()

    def database_failed(self, exc: BaseException) -> bool:
        """If `exc` says the database is corrupt: log it once, with the reason, and stop
        the server (`serve` ends, `oodida server` exits 1); True then.

        Why stop rather than serve on: what is left would be a server that takes results
        it cannot store (the vehicles keep them in their outboxes, unacknowledged, and
        resend them to a repaired server: nothing is lost by stopping), handshakes that
        fail or not depending on which page is damaged, and a traceback per connection.
        A restart then meets the check at start (`server.dbcheck`), which says what is
        wrong and exits 2, so systemd does not restart it in a loop."""
        reason = corruption(exc)
        if reason is None:
            return False
        if self.failed is None:
            self.failed = (f"database {self.config.database} is corrupt ({reason}); stopping. "
                           "Restore it from a backup (the vehicles keep unacknowledged results)")
            log.error("%s", self.failed)
            log.debug("the corruption was found here", exc_info=exc)
            self._failed.set()
        return True

    @staticmethod
    def _tell(channel: Channel, reason: str) -> None:
        """Say why before closing, if the connection can still carry it; never waits."""
        try:
            conn = channel.conn
            data = conn.reject(reason, ErrorCode.INTERNAL) if conn.state is State.HANDSHAKE else conn.send(
                Error(reason=reason, code=ErrorCode.INTERNAL))
            channel.writer.write(data)
        except Exception:
            pass

    # --- connections ------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        channel = Channel(reader, writer, Connection(Side.SERVER, max_frame=self.config.max_frame))
        channel.send_timeout = self.config.limits.send_timeout
        enable_keepalive(writer, self.config.limits.keepalive)
        try:
            refusal = self._over_limit()
            if refusal is not None:
                self._refuse(channel, refusal)
                self._lingering += 1  # not counted against max_connections: it is on its way out
                try:
                    await self._linger(channel)
                finally:
                    self._lingering -= 1
                return
            self._handshaking += 1
            try:
                hello = await self._handshake(channel)
            finally:
                self._handshaking -= 1
            if hello is None:
                return
            if hello.role is Role.VEHICLE:
                await self._serve_vehicle(channel, hello.identity)
            else:  # analysts and readers: a reader's row of RECEIVABLE lets only reads through
                await self._serve_analyst(channel, hello.identity)
        except ChannelError as exc:
            log.debug("connection %s ended: %s", channel.peer, exc)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # never let one connection take the server down
            if self.database_failed(exc):
                self._tell(channel, "the server cannot read its database (corrupt); it is stopping")
            else:
                log.exception("connection %s failed", channel.peer)
        finally:
            self._connections.discard(task)
            try:
                await channel.close()
            except asyncio.CancelledError:
                # cancelled again while closing (the server stopping): end quietly. A
                # handler task that ends cancelled makes asyncio's stream callback log
                # a traceback per connection (8,000 lines when 10,000 vehicles go)
                pass

    def _over_limit(self) -> str | None:
        """Why a new connection is refused now (a flood), or None to go on."""
        limits = self.config.limits
        if len(self._connections) - self._lingering > limits.max_connections:
            return f"server busy: {limits.max_connections} connections at most; try again later"
        if self._handshaking >= limits.max_handshakes:
            return f"server busy: {limits.max_handshakes} handshakes in progress at most; try again later"
        return None

    def _refuse(self, channel: Channel, reason: str) -> None:
        """Say why and hang up, without waiting for a peer that may never read. The log
        gets one line per 5 s of a flood, with the count, not one per connection."""
        try:
            channel.writer.write(channel.conn.reject(reason, ErrorCode.REFUSED))
        except (OSError, RuntimeError):
            pass
        metrics.handshake_refused("busy")
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_logged_at >= 5.0:
            log.warning("refused %d connection(s), the last from %s: %s", self._refused, channel.peer, reason)
            self._refused = 0
            self._refused_logged_at = now

    async def _linger(self, channel: Channel, seconds: float = 1.0) -> None:
        """After a refusal: end our side (FIN after the error) and read what the peer
        sent, for at most `seconds`, before closing. Closing a socket with unread data
        sends a reset, and a reset makes the peer's kernel drop the error it has not
        read yet: under load half of a refused flood never learned why (the hello of an
        honest agent over the limit is such unread data). Bounded: the read stops at
        the peer's close, at 64 KiB a read, or after `seconds`."""
        transport = channel.writer.transport
        try:
            if transport.can_write_eof():
                transport.write_eof()
            async with asyncio.timeout(seconds):
                while await channel.reader.read(64 * 1024):
                    pass
        except (OSError, RuntimeError, TimeoutError):
            pass

    async def _handshake(self, channel: Channel) -> Hello | None:
        return await authenticate(channel, self.credentials, self.config, self.revoker, self._admit)

    async def _admit(self, hello: Hello, channel: Channel) -> str | None:
        """Why a vehicle that proved its credential may not connect now, or None.

        A second agent configured with the same id would otherwise mix two data
        streams under one name and, each dropping the other, reconnect for ever. With
        `duplicate_vehicle = "refuse"` the connection that holds the id keeps it while
        it is alive; the newcomer is told who holds it since when (logged here once
        per holding connection, and the holder is told once too). A holder silent for
        longer than `[limits] keepalive` (agents report every few seconds) is taken
        to be a dead connection the vehicle left behind (it changed networks), and the
        newcomer replaces it, as with "takeover"."""
        old = self.vehicles.get(hello.identity) if hello.role is Role.VEHICLE else None
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

    async def _serve_vehicle(self, channel: Channel, vehicle: str) -> None:
        old = self.vehicles.get(vehicle)
        if old is not None:
            silent = time.monotonic() - old.heard
            why = "takeover" if self.config.duplicate_vehicle == "takeover" else f"the old one silent for {silent:.0f} s"
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
        self.vehicles[vehicle] = session
        try:
            for runner in list(self.runners.values()):
                # the version it should run first (it may have missed a deploy), then its task
                load = runner.load_for(vehicle)
                if load is not None:
                    await self.send_to(vehicle, load)
                task = runner.task_for(vehicle)
                if task is not None:
                    await self.send_to(vehicle, task)
            while True:
                try:
                    message = await channel.recv()
                except RemoteProtocolError as exc:
                    if exc.fatal:
                        raise ChannelClosed(exc.reason) from None
                    await channel.send_bytes(channel.conn.error(exc.reason, request=exc.request))
                    continue
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
                    log.warning("vehicle %s reports: %r", vehicle, message.reason)  # %r: a peer's newlines forge no log lines
        finally:
            session.ended.set()
            if self.vehicles.get(vehicle) is session:
                del self.vehicles[vehicle]
                log.info("vehicle %s disconnected", vehicle)

    async def _on_result(self, session: VehicleSession, result: Result) -> None:
        if result.vehicle != session.vehicle:
            await session.channel.send(
                Error(reason=f"vehicle {session.vehicle} may not send results of {result.vehicle}", code=ErrorCode.UNEXPECTED)
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
        session = self.vehicles.get(vehicle)
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
            session = self.vehicles.get(vehicle)
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
            for (vehicle, _, _), outcome in zip(slow, outcomes):
                if isinstance(outcome, ChannelError):
                    log.info("cannot send to %s: %s", vehicle, outcome)
                    unreached.append(vehicle)
                elif isinstance(outcome, BaseException):  # a bug: one vehicle's, not the fleet's
                    log.error("sending to %s failed", vehicle, exc_info=outcome)
                    unreached.append(vehicle)
        return unreached

    async def cancel_tasks(self, vehicles: list[str], assignment: int) -> None:
        for vehicle in vehicles:
            session = self.vehicles.get(vehicle)
            if session is not None:
                try:
                    await session.channel.send(CancelTask(assignment=assignment))
                except ChannelError:
                    pass

    def publish(self, assignment: int, event: tuple[str, Any]) -> None:
        for queue in self._subscribers.get(assignment, ()):
            queue.put_nowait(event)
        if event[0] == "end":
            self.runners.pop(assignment, None)

    # --- analysts ------------------------------------------------------------------------

    async def _serve_analyst(self, channel: Channel, analyst: str) -> None:
        requests: set[asyncio.Task[None]] = set()
        refused_any = False
        try:
            while True:
                try:
                    message = await channel.recv()
                except RemoteProtocolError as exc:
                    if exc.fatal:
                        raise ChannelClosed(exc.reason) from None
                    await channel.send_bytes(channel.conn.error(exc.reason, request=exc.request))
                    continue
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
                await channel.send(self.catalogue.reply(message, self.vehicles))
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
        connected = sorted(self.vehicles)
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
            offline = [v for v in vehicles if v not in self.vehicles]
            unknown = self._cannot_connect(offline)
            if unknown:  # they would never answer: the assignment would wait out every deadline
                raise SubmitRefused(
                    f"{len(unknown)} of the vehicles named cannot connect: {'; '.join(unknown)} "
                    "(oodida credentials list shows who can)"
                )
            if len(offline) == len(vehicles):
                raise SubmitRefused(f"none of the vehicles is connected: {', '.join(offline)}")
        unknown = self.catalogue.refusal(spec.signals, vehicles)
        if unknown is not None:
            raise SubmitRefused(unknown)
        assignment = self.store.create_assignment(spec, vehicles)
        for side, module in (("on_board", spec.on_board_module), ("off_board", spec.off_board_module)):
            if module is not None:
                code_hash = source_hash(module.source)
                self.store.add_module(code_hash, module.name, module.source)
                self.store.add_signed_deployment(assignment, side, code_hash, "submit", analyst, None, module)
                signed = "" if module.signer is None else f", signed by key {module.signer}"
                self.store.audit(analyst, "submit", assignment, f"{side} {module.name} {code_hash}{signed}")
        runner = AssignmentRunner(self, self.store, assignment, spec, vehicles, self.off_board)
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
            for s in sorted(self.vehicles.values(), key=lambda s: s.vehicle)
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
                ResultsEnd(id=request.id, assignment=request.assignment, state=final.state, reason=final.reason)
            )
        finally:
            subscribers.discard(queue)
            if not subscribers:
                self._subscribers.pop(request.assignment, None)


async def serve(config: ServerConfig, ready: asyncio.Event | None = None) -> None:
    """Run the server until cancelled."""
    server = Server(config)
    await server.start()
    if ready is not None:
        ready.set()
    try:
        await server._failed.wait()
    finally:
        await server.stop()
    raise ServerFailed(server.failed or "stopped")


def _bad_iterations(counts: dict[str, int]) -> dict[str, int]:
    """The partial and failed counts `oodida status` shows beside the completed ones."""
    return {"partial": counts.get("partial", 0), "failed": counts.get("failed", 0)}
