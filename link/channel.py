"""A `wire.Connection` bound to an asyncio stream.

Foreign exceptions (OSError, asyncio's) are translated once, here, into
`ChannelError`; callers above see our errors only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from oodida.core.errors import OodidaError
from oodida.link.tls import plain_problem
from oodida.wire import CLOSED, NEED_DATA, Connection, LocalProtocolError, RemoteProtocolError, Role, Side, State, scram
from oodida.wire.messages import Challenge, Error, ErrorCode, Message, Welcome

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024


class ChannelError(OodidaError, ConnectionError):
    """The connection failed: refused, reset, timed out, or the peer broke protocol."""


class ChannelClosed(ChannelError):
    """The peer closed the connection (cleanly or not)."""


class ProtocolBroken(ChannelError):
    """The peer sent what leaves the stream out of step (a frame over the limit, a
    broken handshake): the connection cannot go on. `reason` is the protocol's."""

    def __init__(self, peer: str, reason: str) -> None:
        super().__init__(f"{peer} broke protocol: {reason}")
        self.reason = reason


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
            if self.writer.transport.is_closing():
                # asyncio 3.11's TLS transport, closed twice, loses its protocol, and a
                # write then raises AttributeError (it ended an assignment once): a
                # closing stream is a closed one for us, whatever the transport
                raise ChannelClosed(f"sending to {self.peer} failed: the connection is closing")
            try:
                self.writer.write(data)
                if self.send_timeout is None or not self.writer.transport.get_write_buffer_size():
                    await self.writer.drain()  # the kernel took it all: no wait, no timer needed
                else:
                    await asyncio.wait_for(self.writer.drain(), self.send_timeout)
            except (OSError, RuntimeError) as exc:  # RuntimeError: transport closed under us
                raise ChannelClosed(f"sending to {self.peer} failed: {exc}") from None
            except TimeoutError:
                self.writer.transport.abort()  # drop what it did not read: memory is freed now
                raise ChannelClosed(
                    f"{self.peer} read nothing for {self.send_timeout} s while we sent to it; connection dropped"
                ) from None

    def try_send_bytes(self, data: bytes) -> bool:
        """Write `data` now, without a coroutine, when `send_bytes` would not wait:
        nobody else is sending and the socket's buffer is below its high-water mark.
        False: nothing was written; use `send_bytes`. For sending one task to
        thousands of vehicles, where a task per vehicle costs more than the write."""
        transport = self.writer.transport
        if self._send_lock.locked() or transport.is_closing():
            return False
        if transport.get_write_buffer_size() >= transport.get_write_buffer_limits()[1]:
            return False
        try:
            self.writer.write(data)
        except (OSError, RuntimeError):
            return False
        return True

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

    async def messages(
        self, on_error: Callable[[RemoteProtocolError], object] | None = None, *, reply: bool = True
    ) -> AsyncIterator[Message]:
        """Each message the peer sends, until it closes (`ChannelClosed`).

        A bad message that leaves the stream in step (`RemoteProtocolError` with
        `fatal` False: it decoded, but did not validate or is not allowed now) is
        skipped: `on_error` is told first (to log or count it), then the peer gets an
        `error` with the reason and the id of the message it refused, unless `reply`
        is False. A fatal one ends the loop with `ProtocolBroken`; closing the channel
        is for its owner, as for every other end. The one receive loop of the server's
        rooms, the agent and the simulated fleet."""
        while True:
            try:
                message = await self.recv()
            except RemoteProtocolError as exc:
                if exc.fatal:
                    raise ProtocolBroken(self.peer, exc.reason) from None
                if on_error is not None:
                    on_error(exc)
                if reply:
                    await self.send_bytes(self.conn.error(exc.reason, request=exc.request))
                continue
            yield message

    def tell(self, reason: str, code: ErrorCode = ErrorCode.REFUSED) -> bool:
        """Write why we hang up now, without waiting for the peer to read it: a
        rejection during the handshake, an `error` after it. For a peer that may
        never read (a flood) or a connection on its way out (the server failing);
        never raises. False when the stream could not take it."""
        if self.writer.transport.is_closing():
            return False
        try:
            conn = self.conn
            data = conn.reject(reason, code) if conn.state is State.HANDSHAKE else conn.error(reason, code)
            self.writer.write(data)
        except (LocalProtocolError, OSError, RuntimeError):  # RuntimeError: transport closed under us
            return False
        return True

    async def linger(self, seconds: float = 1.0) -> None:
        """End our side (FIN after what we wrote) and read what the peer sent, for at
        most `seconds`. Closing a socket with unread data sends a reset, and a reset
        makes the peer's kernel drop what it has not read yet: under load half of a
        refused flood never learned why (the hello of an honest agent over the limit
        is such unread data). Bounded: the read stops at the peer's close, at 64 KiB a
        read, or after `seconds`; never raises our errors."""
        transport = self.writer.transport
        try:
            if transport.can_write_eof():
                transport.write_eof()
            async with asyncio.timeout(seconds):
                while await self.reader.read(READ_SIZE):
                    pass
        except (OSError, RuntimeError, TimeoutError):
            pass

    async def refuse(self, reason: str, code: ErrorCode = ErrorCode.REFUSED, *, linger: float = 1.0) -> None:
        """Say why (`tell`), linger so the peer can read it (`linger`), and close."""
        self.tell(reason, code)
        try:
            await self.linger(linger)
        finally:
            await self.close()

    @property
    def peercert(self) -> dict[str, Any] | None:
        """The peer's TLS certificate as `ssl.SSLSocket.getpeercert()` gives it; None
        on plain TCP or when it presented none."""
        cert = self.writer.get_extra_info("peercert")
        return cert if isinstance(cert, dict) and cert else None

    async def close(self) -> None:
        """Close the stream without hanging (at most 2 s) or raising our errors.

        A cancellation that arrives meanwhile is re-raised once the stream is closed:
        swallowing it here once left an agent deaf to SIGTERM (its uplink task, told
        to stop while closing a dead connection, went on reconnecting)."""
        try:
            self.writer.close()
            await asyncio.shield(asyncio.wait_for(self.writer.wait_closed(), timeout=2.0))
        except (TimeoutError, OSError, RuntimeError):
            pass


async def connect(
    host: str,
    port: int,
    *,
    role: Role,
    identity: str,
    secret: str,
    software: str = "",
    timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> tuple[Channel, Welcome]:
    """Dial (TLS when `ssl_context` is given, else plain TCP, which only a loopback
    host may use), prove we hold `secret` (`handshake`), and return the channel and the
    server's welcome. Raises `HandshakeRefused` with the server's reason when it
    refuses us, `ChannelError` for everything else.

    This is the one client side of the handshake: the agent, the analyst CLI and the
    benchmarks all call it, and thousands of calls in one process are cheap (the
    secret's key stretching is cached, see `wire.scram`)."""
    if ssl_context is None and (problem := plain_problem(host)) is not None:
        raise ChannelError(problem)
    where = f"cannot connect to {host}:{port}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    # TCP first, then TLS, each with what is left of `timeout`: a timeout then says
    # which step got no answer (a TimeoutError's own text is empty)
    try:
        sock = await asyncio.wait_for(_tcp_connect(host, port), timeout)
    except TimeoutError:
        raise ChannelError(
            f"{where}: no answer to the TCP connection in {timeout:g} s (a firewall that drops it, or the host is down)"
        ) from None
    except OSError as exc:
        raise ChannelError(f"{where}: {_reason(exc)}") from None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                sock=sock, ssl=ssl_context, limit=READ_SIZE,
                server_hostname=(server_hostname or host) if ssl_context is not None else None,
            ),
            max(0.0, deadline - loop.time()),
        )
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise ChannelError(
            f"TLS with {host}:{port} failed: the server's certificate is not trusted ({exc.verify_message})"
        ) from None
    except ssl.SSLError as exc:
        sock.close()
        raise ChannelError(f"TLS with {host}:{port} failed: {exc.reason or exc}") from None
    except TimeoutError:
        sock.close()
        raise ChannelError(
            f"{where}: no TLS handshake answer in {timeout:g} s: it accepted the TCP connection but did not answer "
            "the TLS handshake (not an oodida server, a plain-TCP one, or a stuck one)"
        ) from None
    except OSError as exc:
        sock.close()
        raise ChannelError(f"{where}: {_reason(exc)}") from None
    channel = Channel(reader, writer, Connection(Side.CLIENT, role=role))
    try:
        welcome = await asyncio.wait_for(handshake(channel, identity, secret, software=software), timeout)
    except TimeoutError:
        await channel.close()
        raise ChannelError(
            f"{where}: no handshake answer in {timeout:g} s: {host}:{port} did not answer the handshake "
            "(not an oodida server, or a stuck one)"
        ) from None
    except BaseException:
        await channel.close()
        raise
    return channel, welcome


def _reason(exc: OSError) -> str:
    """"Connection refused", not "[Errno 111] Connect call failed ('127.0.0.1', 7400)"."""
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    if exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


_AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]  # as getaddrinfo gives them


def _numeric(host: str, port: int) -> list[_AddrInfo] | None:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        address = (host, port) if family == socket.AF_INET else (host, port, 0, 0)
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)]
    return None


async def _tcp_connect(host: str, port: int) -> socket.socket:
    """A connected non-blocking TCP socket to the first address of `host` that answers."""
    loop = asyncio.get_running_loop()
    # as asyncio does: no resolver thread for an address (a fleet of 10,000 connects)
    infos: Sequence[_AddrInfo] | None = _numeric(host, port)
    if infos is None:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"{host} has no address")
    last: OSError | None = None
    for family, type_, proto, _, address in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
    assert last is not None
    raise last


async def handshake(channel: Channel, identity: str, secret: str, *, software: str = "") -> Welcome:
    """Hello, challenge, proof, welcome on a fresh client channel. Checks the server's
    signature, so a server that does not hold our credential cannot welcome us."""
    conn = channel.conn
    assert conn.our_role is not None
    nonce = scram.new_nonce()
    try:
        await channel.send_bytes(conn.hello(identity, nonce, software=software))
        reply = await channel.recv()
        if isinstance(reply, Error):
            raise HandshakeRefused(reply.reason, reply.code)
        assert isinstance(reply, Challenge)
        if not reply.nonce.startswith(nonce) or len(reply.nonce) < len(nonce) + 16:
            raise ChannelError(f"handshake with {channel.peer} failed: the server's nonce does not extend ours")
        if reply.iterations > scram.MAX_ITERATIONS:
            raise ChannelError(f"handshake with {channel.peer} failed: {reply.iterations} iterations is too many")
        message = scram.auth_message(conn.our_role.value, identity, nonce, reply.nonce, reply.salt, reply.iterations)
        proof, expected = scram.client_proof(secret, reply.salt, reply.iterations, message)
        await channel.send_bytes(conn.proof(proof))
        reply = await channel.recv()
    except RemoteProtocolError as exc:
        raise ChannelError(f"handshake with {channel.peer} failed: {exc.reason}") from None
    if isinstance(reply, Error):
        raise HandshakeRefused(reply.reason, reply.code)
    assert isinstance(reply, Welcome)
    if not scram.check_server_signature(expected, reply.signature):
        raise ChannelError(
            f"handshake with {channel.peer} failed: the server's signature is wrong (it does not hold our credential)"
        )
    return reply


class HandshakeRefused(ChannelError):
    """The server said no (bad credential, wrong version); retrying will not help
    until the configuration changes."""

    def __init__(self, reason: str, code: ErrorCode) -> None:
        super().__init__(f"server refused the handshake: {reason}")
        self.reason = reason
        self.code = code


__all__ = ["Channel", "ChannelClosed", "ChannelError", "HandshakeRefused", "ProtocolBroken", "connect", "handshake"]
