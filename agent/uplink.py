"""The agent's connection to the server: connect, hand over, reconnect with backoff.

The link may drop at any time (a vehicle drives into a tunnel). Tasks keep running
while it is down; their results wait in the outbox and go out on the next connect.
Backoff doubles from `backoff_min` to `backoff_max`, with jitter so a fleet that lost
the server together does not return in lockstep.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from oodida.agent import metrics
from oodida.agent.config import ServerLink
from oodida.agent.outbox import Outbox
from oodida.link import Channel, ChannelError, HandshakeRefused, connect
from oodida.wire import RemoteProtocolError, Role
from oodida.wire.messages import (
    CancelTask,
    Error,
    ErrorCode,
    LoadModule,
    Message,
    ModuleAck,
    Result,
    ResultAck,
    SignalCatalogue,
    Task,
    VehicleStatus,
)

log = logging.getLogger(__name__)

SOFTWARE = "oodida-agent/0.1"


class Uplink:
    def __init__(
        self,
        vehicle: str,
        config: ServerLink,
        outbox: Outbox,
    ) -> None:
        self.vehicle = vehicle
        self.config = config
        self.outbox = outbox
        self.on_task: Callable[[Task], None] = lambda task: None
        self.on_cancel: Callable[[int], None] = lambda assignment: None
        self.on_module: Callable[[LoadModule], Awaitable[ModuleAck]] | None = None
        self._acks: set[asyncio.Task[None]] = set()
        self.status: Callable[[], VehicleStatus] | None = None
        # the signal catalogue when worth sending (argument: a new connection), else None
        self.catalogue: Callable[[bool], SignalCatalogue | None] = lambda fresh: None
        self.channel: Channel | None = None
        self.connected = asyncio.Event()
        self.connections = 0
        self._refusal: str | None = None  # the last refusal logged: a repeat is not logged again
        self._replaced = False  # the server replaced this connection by another agent's with our id

    def bind(
        self,
        *,
        on_task: Callable[[Task], None],
        on_cancel: Callable[[int], None],
        status: Callable[[], VehicleStatus],
        on_module: Callable[[LoadModule], Awaitable[ModuleAck]] | None = None,
    ) -> None:
        """Connect the uplink to the task runner (built after it, as it sends through it)."""
        self.on_task, self.on_cancel, self.status = on_task, on_cancel, status
        self.on_module = on_module

    async def send(self, message: Message) -> bool:
        """Send now if connected; False when not (nothing is kept: what must survive a
        disconnection is in the outbox or is asked for again by the server)."""
        channel = self.channel
        if channel is None:
            return False
        try:
            await channel.send(message)
            return True
        except ChannelError as exc:
            log.info("%s not sent (%s)", type(message).__name__, exc)
            return False

    async def _acknowledge(self, ack: Awaitable[ModuleAck]) -> None:
        """Answer a `LoadModule` once it is applied. If the link dropped meanwhile the
        answer is lost, which is safe: the server sends the version again on reconnect
        and a version already loaded is acknowledged at once."""
        await self.send(await ack)

    async def send_result(self, result: Result) -> None:
        """Send now if connected; otherwise it waits in the outbox for the next connect."""
        channel = self.channel
        if channel is None:
            return
        try:
            await channel.send(result)
        except ChannelError as exc:
            log.info("result %d/%d not sent now (%s); it stays in the outbox", result.assignment, result.iteration, exc)

    async def run(self) -> None:
        backoff = self.config.backoff_min
        ssl_context = self.config.ssl_context()  # once: loading the CA is not free
        while True:
            try:
                channel, _ = await connect(
                    self.config.host,
                    self.config.port,
                    role=Role.VEHICLE,
                    identity=self.vehicle,
                    secret=self.config.secret(),  # read per connect: a rotated secret needs no restart
                    software=SOFTWARE,
                    timeout=self.config.connect_timeout,
                    ssl_context=ssl_context,
                )
            except HandshakeRefused as exc:
                metrics.connect_failed(refused=True)
                # the same refusal every backoff_max seconds is one fact, said once (the
                # server says it once too); retrying stays slow, never a flap
                if exc.reason != self._refusal:
                    level = logging.WARNING if exc.code is ErrorCode.DUPLICATE else logging.ERROR
                    log.log(level, "%s; retrying in %.0f s", exc, self.config.backoff_max)
                    self._refusal = exc.reason
                else:
                    log.debug("%s (again); retrying in %.0f s", exc, self.config.backoff_max)
                await asyncio.sleep(self.config.backoff_max)
                continue
            except ChannelError as exc:
                metrics.connect_failed(refused=False)
                delay = backoff * random.uniform(0.5, 1.0)
                log.info("%s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self.config.backoff_max)
                continue
            backoff = self.config.backoff_min
            self.connections += 1
            self._refusal = None
            log.info("connected to %s:%d", self.config.host, self.config.port)
            try:
                await self._serve(channel)
            except ChannelError as exc:
                log.warning("lost the server: %s", exc)
            finally:
                self.channel = None
                self.connected.clear()
                await channel.close()
            if self._replaced:  # another agent holds our id: no tug of war, one try per backoff_max
                self._replaced = False
                log.info("retrying in %.0f s", self.config.backoff_max)
                await asyncio.sleep(self.config.backoff_max)
                continue
            await asyncio.sleep(self.config.backoff_min * random.uniform(0.5, 1.0))

    async def _serve(self, channel: Channel) -> None:
        assert self.status is not None, "bind() before run()"
        await channel.send(self.status())
        await self._send_catalogue(channel, fresh=True)
        for result in self.outbox.pending():
            await channel.send(result)
        self.channel = channel
        self.connected.set()
        reporter = asyncio.create_task(self._report_status(channel))
        try:
            async for message in channel.messages(on_error=self._bad_message):
                if isinstance(message, LoadModule):
                    if self.on_module is None:
                        await channel.send(
                            ModuleAck(assignment=message.assignment, code_hash=message.code_hash, ok=False,
                                      error="this agent runs no analysts' modules")
                        )
                        continue
                    job = asyncio.create_task(self._acknowledge(self.on_module(message)))
                    self._acks.add(job)
                    job.add_done_callback(self._acks.discard)
                elif isinstance(message, Task):
                    self.on_task(message)
                elif isinstance(message, ResultAck):
                    self.outbox.ack((message.assignment, message.iteration))
                elif isinstance(message, CancelTask):
                    self.on_cancel(message.assignment)
                elif isinstance(message, Error):
                    log.warning("server says: %s", message.reason)
                    if message.code is ErrorCode.DUPLICATE:
                        self._replaced = True
        finally:
            reporter.cancel()

    @staticmethod
    def _bad_message(exc: RemoteProtocolError) -> None:
        log.warning("bad message from the server: %s", exc.reason)

    async def _report_status(self, channel: Channel) -> None:
        assert self.status is not None
        while True:
            await asyncio.sleep(self.config.status_interval)
            await channel.send(self.status())
            await self._send_catalogue(channel, fresh=False)

    async def _send_catalogue(self, channel: Channel, *, fresh: bool) -> None:
        catalogue = self.catalogue(fresh)
        if catalogue is not None:
            await channel.send(catalogue)
