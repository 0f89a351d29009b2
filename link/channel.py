"""A `wire.Connection` bound to an asyncio stream.

Foreign exceptions (OSError, asyncio's) are translated once, here, into
`ChannelError`; callers above see our errors only.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque

from oodida.errors import OodidaError
from wire import CLOSED, NEED_DATA, Connection, RemoteProtocolError, Role, Side
from wire.messages import Error, ErrorCode, Message, Welcome

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024


class ChannelError(OodidaError, ConnectionError):
    """The connection failed: refused, reset, timed out, or the peer broke protocol."""


class ChannelClosed(ChannelError):
    """The peer closed the connection (cleanly or not)."""


class Channel:
    """Send and receive whole messages over one stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = conn
        self._pending: deque[Message] = deque()
        self._send_lock = asyncio.Lock()
        # Seconds a send may wait for the peer to read; None waits for ever. A peer
        # that stops reading (half-open, or hostile) would otherwise hold every task
        # that sends to it, and the lock, for good: past it the stream is aborted.
        self.send_timeout: float | None = None
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    async def send(self, message: Message) -> None:
        await self.send_bytes(self.conn.send(message))

    async def send_bytes(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                self.writer.write(data)
                if self.send_timeout is None or not self.writer.transport.get_write_buffer_size():
                    await self.writer.drain()  # the kernel took it all: no wait, no timer needed
                else:
                    await asyncio.wait_for(self.writer.drain(), self.send_timeout)
            except (OSError, RuntimeError) as exc:  # RuntimeError: transport closed under us
                raise ChannelClosed(f"sending to {self.peer} failed: {exc}") from None
            except asyncio.TimeoutError:
                self.writer.transport.abort()  # drop what it did not read: memory is freed now
                raise ChannelClosed(
                    f"{self.peer} read nothing for {self.send_timeout} s while we sent to it; connection dropped"
                ) from None

    async def recv(self) -> Message:
        """The next message. Raises `RemoteProtocolError` for a bad one (check
        `.fatal`), `ChannelClosed` when the peer is gone."""
        while True:
            event = self.conn.next_event()
            if event is CLOSED:
                raise ChannelClosed(f"{self.peer} closed the connection")
            if event is not NEED_DATA:
                assert isinstance(event, Message)
                return event
            try:
                data = await self.reader.read(READ_SIZE)
            except (OSError, asyncio.IncompleteReadError) as exc:
                raise ChannelClosed(f"reading from {self.peer} failed: {exc}") from None
            self.conn.receive_data(data)

    async def close(self) -> None:
        """Close the stream without hanging (at most 2 s) or raising our errors.

        A cancellation that arrives meanwhile is re-raised once the stream is closed:
        swallowing it here once left an agent deaf to SIGTERM (its uplink task, told
        to stop while closing a dead connection, went on reconnecting)."""
        try:
            self.writer.close()
            await asyncio.shield(asyncio.wait_for(self.writer.wait_closed(), timeout=2.0))
        except (OSError, asyncio.TimeoutError, RuntimeError):
            pass


async def connect(
    host: str,
    port: int,
    *,
    role: Role,
    identity: str,
    token: str,
    software: str = "",
    timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[Channel, Welcome]:
    """Dial, say hello, and wait for the welcome. Raises `ChannelError` with the
    server's reason when it refuses us."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ssl_context, limit=READ_SIZE), timeout
        )
    except (OSError, asyncio.TimeoutError) as exc:
        raise ChannelError(f"cannot connect to {host}:{port}: {exc or 'timed out'}") from None
    channel = Channel(reader, writer, Connection(Side.CLIENT, role=role))
    try:
        await channel.send_bytes(channel.conn.hello(identity, token, software=software))
        reply = await asyncio.wait_for(channel.recv(), timeout)
    except asyncio.TimeoutError:
        await channel.close()
        raise ChannelError(f"{host}:{port} did not answer the handshake within {timeout} s") from None
    except RemoteProtocolError as exc:
        await channel.close()
        raise ChannelError(f"handshake with {host}:{port} failed: {exc.reason}") from None
    except ChannelError:
        await channel.close()
        raise
    if isinstance(reply, Error):
        await channel.close()
        raise HandshakeRefused(reply.reason, reply.code)
    assert isinstance(reply, Welcome)
    return channel, reply


class HandshakeRefused(ChannelError):
    """The server said no (bad credential, wrong version); retrying will not help
    until the configuration changes."""

    def __init__(self, reason: str, code: ErrorCode) -> None:
        super().__init__(f"server refused the handshake: {reason}")
        self.reason = reason
        self.code = code


__all__ = ["Channel", "ChannelClosed", "ChannelError", "HandshakeRefused", "connect"]
