"""The server's door: accepting connections, TLS, flood control, the handshake, and
handing each authenticated peer to its room.

Everything a connection meets before it is somebody's is here: the listening socket
(bound before anything is resumed, so a port in use stops the server first), the
limits on connections and handshakes in progress (a fleet reconnecting at once, or a
flood), the refusal that still reaches the refused (`Channel.refuse`), and the one
place where a connection that fails is contained: nothing a peer sends may end the
process. What a vehicle or an analyst then says is its room's business
(server/vehicles.py, server/analysts.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from oodida.link import Channel, ChannelError
from oodida.link.keepalive import enable_keepalive
from oodida.link.tls import limit_tls_read_buffers, server_context
from oodida.server import metrics
from oodida.server.config import ServerConfig
from oodida.server.credentials import Credentials
from oodida.server.handshake import authenticate
from oodida.server.listen import ListenError, listen_problem
from oodida.server.revocation import Revoker
from oodida.wire import Connection, Role, Side
from oodida.wire.messages import ErrorCode, Hello

log = logging.getLogger(__name__)

# Connections the kernel completes before we accept them (capped by net.core.somaxconn):
# asyncio's default of 100 drops the SYNs of a fleet reconnecting at once, and each
# dropped one retries a second or more later.
LISTEN_BACKLOG = 4096

Room = Callable[[Channel, str], Awaitable[None]]
"""Serves one authenticated peer (the channel, its identity) until it goes."""

Admit = Callable[[Hello, Channel], Awaitable[str | None]]


class Listener:
    def __init__(
        self,
        config: ServerConfig,
        credentials: Credentials,
        revoker: Revoker,
        rooms: Mapping[Role, Room],
        *,
        admit: Admit | None = None,
        database_failed: Callable[[BaseException], bool] = lambda exc: False,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.revoker = revoker
        self.rooms = rooms  # a reader's row of RECEIVABLE lets only reads through, whichever room serves it
        self.admit = admit
        self.database_failed = database_failed
        self.port: int | None = None
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._handshaking = 0  # connections between accept and the end of their handshake
        self._refused = 0  # connections refused over a limit, not yet logged
        self._lingering = 0  # refused connections reading out what their peers sent
        self._refused_logged_at = 0.0

    @property
    def connections(self) -> int:
        """Open connections: vehicles, analysts, handshakes, refused ones lingering."""
        return len(self._connections)

    @property
    def handshaking(self) -> int:
        return self._handshaking

    # --- the socket ---------------------------------------------------------------------

    async def bind(self) -> None:
        """Bind the listening socket, not accepting yet; ListenError with the reason if
        the address cannot be had."""
        tls = self.config.tls
        context = None if tls is None else server_context(cert=tls.cert, key=tls.key, client_ca=tls.client_ca)
        if context is not None:
            limit_tls_read_buffers()  # 256 KiB a connection otherwise: 3 GiB at 10,000 vehicles
        host, port = self.config.listen.host, self.config.listen.port
        try:
            self._server = await asyncio.start_server(
                self._on_connect, host, port, limit=64 * 1024, ssl=context,
                ssl_handshake_timeout=self.config.handshake_timeout if context is not None else None,
                backlog=LISTEN_BACKLOG, start_serving=False,
            )
        except OSError as exc:
            raise ListenError(listen_problem(host, port, exc)) from exc

    async def open(self) -> None:
        """Start accepting on the bound socket."""
        assert self._server is not None, "bind() first"
        await self._server.start_serving()
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> list[asyncio.Task[Any]]:
        """Stop accepting and cancel every connection; their tasks, for the caller to
        wait for together with whatever else is stopping."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        return tasks

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()

    # --- one connection -----------------------------------------------------------------

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
                self._note_refusal(channel, refusal)
                self._lingering += 1  # not counted against max_connections: it is on its way out
                try:
                    await channel.refuse(refusal, ErrorCode.REFUSED)
                finally:
                    self._lingering -= 1
                return
            self._handshaking += 1
            try:
                hello = await authenticate(channel, self.credentials, self.config, self.revoker, self.admit)
            finally:
                self._handshaking -= 1
            if hello is None:
                return
            room = self.rooms.get(hello.role)
            if room is None:  # a role the wire admits and this server seats nowhere: a bug, not the peer's
                log.error("no room for %s %s; closing", hello.role.value, hello.identity)
                return
            await room(channel, hello.identity)
        except ChannelError as exc:
            log.debug("connection %s ended: %s", channel.peer, exc)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # never let one connection take the server down
            if self.database_failed(exc):
                channel.tell("the server cannot read its database (corrupt); it is stopping", ErrorCode.INTERNAL)
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

    def _note_refusal(self, channel: Channel, reason: str) -> None:
        """Count a refusal; the log gets one line per 5 s of a flood, with the count,
        not one per connection."""
        metrics.handshake_refused("busy")
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_logged_at >= 5.0:
            log.warning("refused %d connection(s), the last from %s: %s", self._refused, channel.peer, reason)
            self._refused = 0
            self._refused_logged_at = now


__all__ = ["LISTEN_BACKLOG", "Listener", "Room"]
