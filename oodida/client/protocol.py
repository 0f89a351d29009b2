"""The analyst's side of the protocol: one connection, many requests at once.

Every request carries an id and the server answers each in its own task, so one
connection can follow an assignment's results while it asks for the status or
deploys a module (a notebook's progress bar, a dashboard's pages). One reader task
routes every incoming message to the request that waits for its id. A refusal comes
back as `RequestFailed` carrying the server's reason, never as a bare protocol error.

`wait_closed()` and `closed_reason` say when and why the connection ended, in words
for a person ("the server ended the session: credential of ana was revoked ..."),
even with no request pending: a front end that keeps a user signed in learns it at
once. `AnalystClient(channel, refuse_locally=False)` sends every request, even one
the role may not make, so that the server refuses it in its own words: for a front
end that forwards what its user asked, where the server's refusal is the one that
counts.

This is the low layer: protocol messages in, protocol messages out. Analysts use
`oodida.client.AsyncClient` or `oodida.connect()`, built on it.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from oodida.core.errors import OodidaError
from oodida.link import Channel, ChannelError, HandshakeRefused, connect
from oodida.link.credfile import load_client_credentials
from oodida.wire import LocalProtocolError, RemoteProtocolError, Role
from oodida.wire.connection import encode_message
from oodida.wire.messages import (
    AssignmentSpec,
    Cancel,
    Cancelled,
    Deploy,
    DeployEnd,
    Deploying,
    DeployProgress,
    Error,
    IterationReport,
    Message,
    ResultsEnd,
    ResultsRequest,
    SignalsReply,
    SignalsRequest,
    StatusReply,
    StatusRequest,
    Submit,
    Submitted,
    VersionsReply,
    VersionsRequest,
)

SOFTWARE = "oodida-client/0.1"


class RequestFailed(OodidaError):
    """The server refused or could not carry out a request; `str()` is its reason,
    `code` the protocol's error code (`refused`, `not_found`, ...), "" when the
    connection itself failed."""

    def __init__(self, reason: str, code: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class ConnectionLost(RequestFailed, ChannelError):
    """The connection to the server ended (or broke) before the answer came."""


class _Failure:
    """What the reader hands a waiting request instead of a message."""

    def __init__(self, error: RequestFailed) -> None:
        self.error = error


class AnalystClient:
    """Requests by protocol message; concurrent requests share the connection."""

    def __init__(self, channel: Channel, *, refuse_locally: bool = True) -> None:
        self.channel = channel
        self.refuse_locally = refuse_locally
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Queue[Message | _Failure]] = {}
        self._closed: RequestFailed | None = None
        self._reader: asyncio.Task[None] | None = None
        self._last_word: str | None = None  # what the server said to the session, not to a request
        self._ended = asyncio.Event()
        self.closed_reason: str | None = None
        """Why the connection ended, once it has (see `wait_closed`); None while it lasts."""

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        secret: str,
        *,
        identity: str,
        role: Role | str = Role.ANALYST,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        refuse_locally: bool = True,
    ) -> AnalystClient:
        """Connect as `identity` (an analyst, or a reader; `role` may be its name); TLS
        unless `ssl_context` is None, which only a loopback host may use. A refused
        handshake raises `HandshakeRefused` with the server's reason; an unreachable
        server `ChannelError` or `OSError`."""
        channel, _ = await connect(
            host, port, role=Role(role), identity=identity, secret=secret, software=SOFTWARE, timeout=timeout,
            ssl_context=ssl_context,
        )
        return cls(channel, refuse_locally=refuse_locally)

    @classmethod
    async def from_file(
        cls, path: str | Path, *, server: tuple[str, int] | None = None, ca: str | None = None, timeout: float = 10.0
    ) -> AnalystClient:
        """Connect with a credential file (`oodida init` writes them); `server` and
        `ca` override the file's host:port and CA."""
        creds = load_client_credentials(path)
        host, port = server or (creds.host, creds.port)
        return await cls.connect(
            host, port, creds.secret, identity=creds.identity, role=creds.role,
            ssl_context=creds.ssl_context(ca), timeout=timeout,
        )

    async def close(self) -> None:
        if self.closed_reason is None:
            self.closed_reason = "closed by the client"
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
        await self.channel.close()
        if self._closed is None:  # a request still waiting fails, and a new one at once, never hangs
            self._closed = ConnectionLost(self.closed_reason)
        self._fail_all(self._closed)
        self._ended.set()

    async def wait_closed(self) -> str:
        """Wait until the connection ends, with or without a request pending, and say
        why: the server ended the session (its words), the connection broke, or
        `close()`. Returns `closed_reason`."""
        if not self._ended.is_set():
            self._start_reader()  # the reader is what sees the end
            await self._ended.wait()
        assert self.closed_reason is not None
        return self.closed_reason

    def _end(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        self._ended.set()

    async def __aenter__(self) -> AnalystClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- routing ---------------------------------------------------------------------

    def _start_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read(), name="analyst-reader")

    async def _read(self) -> None:
        try:
            while True:
                try:
                    message = await self.channel.recv()
                except RemoteProtocolError as exc:
                    error: RequestFailed = RequestFailed(f"bad reply from the server: {exc.reason}")
                    if exc.fatal:
                        error = ConnectionLost(f"bad reply from the server: {exc.reason}")
                        self._closed = error
                    if not exc.fatal and exc.request in self._waiting:  # only the request it answers
                        self._waiting[exc.request].put_nowait(_Failure(error))
                    else:
                        self._fail_all(error)
                    if exc.fatal:
                        self._end(str(error))
                        return
                    continue
                request = getattr(message, "id", None)
                if isinstance(message, Error) and request is None:
                    # the server speaks to the session, not to a request (it could not tell
                    # which one it answers, or it is ending the session and says why):
                    # every waiting request fails, and the reason is the session's if it ends
                    self._last_word = message.reason
                    self._fail_all(RequestFailed(message.reason, message.code.value))
                    continue
                queue = self._waiting.get(request) if request is not None else None
                if queue is not None:
                    queue.put_nowait(message)
        except ChannelError as exc:
            self._closed = ConnectionLost(f"the connection to the server ended: {exc}")
            self._fail_all(self._closed)
            said = self._last_word
            self._end(f"the server ended the session: {said}" if said else str(self._closed))

    def _fail_all(self, error: RequestFailed) -> None:
        for queue in self._waiting.values():
            queue.put_nowait(_Failure(error))

    def _open(self) -> tuple[int, asyncio.Queue[Message | _Failure]]:
        if self._closed is not None:
            raise self._closed
        request = next(self._ids)
        queue: asyncio.Queue[Message | _Failure] = asyncio.Queue()
        self._waiting[request] = queue
        self._start_reader()
        return request, queue

    @staticmethod
    async def _next(queue: asyncio.Queue[Message | _Failure]) -> Message:
        item = await queue.get()
        if isinstance(item, _Failure):
            raise item.error
        if isinstance(item, Error):
            raise RequestFailed(item.reason, item.code.value)
        return item

    async def _send(self, message: Message) -> None:
        """Send, or refuse here what our role may not ask (a reader's submit): the
        server would refuse it too, this says so without the round trip. Without
        `refuse_locally` the message goes as the protocol encodes it and the server
        decides."""
        try:
            if self.refuse_locally:
                await self.channel.send(message)
            else:
                await self.channel.send_bytes(encode_message(message, max_frame=self.channel.conn.max_frame))
        except LocalProtocolError:
            role = self.channel.conn.our_role
            raise RequestFailed(
                f"a {role.value if role else 'client'} may not send {message.__struct_config__.tag!r}", "unexpected"
            ) from None
        except ChannelError as exc:
            raise ConnectionLost(f"the connection to the server ended: {exc}") from None

    async def _ask(self, build: Any, expect: type[Message]) -> Message:
        request, queue = self._open()
        try:
            await self._send(build(request))
            reply = await self._next(queue)
        finally:
            self._waiting.pop(request, None)
        if not isinstance(reply, expect):
            raise RequestFailed(f"unexpected reply {type(reply).__name__}, expected {expect.__name__}")
        return reply

    async def _stream(self, build: Any) -> AsyncGenerator[Message, None]:
        request, queue = self._open()
        try:
            await self._send(build(request))
            while True:
                yield await self._next(queue)
        finally:
            self._waiting.pop(request, None)

    # --- requests --------------------------------------------------------------------

    async def submit(self, spec: AssignmentSpec) -> Submitted:
        reply = await self._ask(lambda i: Submit(id=i, spec=spec), Submitted)
        assert isinstance(reply, Submitted)
        return reply

    async def status(self) -> StatusReply:
        reply = await self._ask(lambda i: StatusRequest(id=i), StatusReply)
        assert isinstance(reply, StatusReply)
        return reply

    async def cancel(self, assignment: int) -> Cancelled:
        reply = await self._ask(lambda i: Cancel(id=i, assignment=assignment), Cancelled)
        assert isinstance(reply, Cancelled)
        return reply

    async def results(
        self, assignment: int, *, follow: bool = False, since: int = 0
    ) -> AsyncIterator[IterationReport | ResultsEnd]:
        """Each stored (and, with `follow`, each new) iteration; the last item is the
        `ResultsEnd` that gives the assignment's state."""
        stream = self._stream(lambda i: ResultsRequest(id=i, assignment=assignment, follow=follow, since=since))
        try:
            async for message in stream:
                if isinstance(message, (IterationReport, ResultsEnd)):
                    yield message
                if isinstance(message, ResultsEnd):
                    return
        finally:
            await stream.aclose()

    async def deploy(self, **fields: Any) -> AsyncIterator[Deploying | DeployProgress | DeployEnd]:
        """Deploy (or roll back to) a module version: `Deploying`, then
        `DeployProgress` with the vehicles' answers as they arrive, then `DeployEnd`. The fields are
        those of `wire.messages.Deploy` but `id`. A refusal raises `RequestFailed`
        with the reasons (and nothing changed on the server)."""
        stream = self._stream(lambda i: Deploy(id=i, **fields))
        try:
            async for message in stream:
                if not isinstance(message, (Deploying, DeployProgress, DeployEnd)):
                    raise RequestFailed(f"unexpected reply {type(message).__name__} to a deploy")
                yield message
                if isinstance(message, DeployEnd):
                    return
        finally:
            await stream.aclose()

    async def versions(self, assignment: int) -> VersionsReply:
        reply = await self._ask(lambda i: VersionsRequest(id=i, assignment=assignment), VersionsReply)
        assert isinstance(reply, VersionsReply)
        return reply

    async def catalogue(self, vehicle: str | None = None) -> SignalsReply:
        """The signal catalogue: every signal each vehicle (or only `vehicle`) reported
        it can serve, with unit, range and measured rate (`wire.messages.SignalInfo`)."""
        reply = await self._ask(lambda i: SignalsRequest(id=i, vehicle=vehicle), SignalsReply)
        assert isinstance(reply, SignalsReply)
        return reply

    signals = catalogue  # the name `oodida signals` and the tests know it by


__all__ = [
    "SOFTWARE", "AnalystClient", "ChannelError", "ConnectionLost", "HandshakeRefused", "RequestFailed",
    # the protocol messages the requests return, for callers that tell them apart
    "Cancelled", "DeployEnd", "Deploying", "DeployProgress", "IterationReport", "ResultsEnd", "SignalsReply",
    "StatusReply", "Submitted", "VersionsReply",
]
