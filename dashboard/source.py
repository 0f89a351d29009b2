"""The dashboard's one door to the server: a signed-in user's live connection.

Everything the dashboard knows comes through here, and this is the only module that
knows which client library speaks the protocol: the analysts' client
(`oodida.client.protocol.AnalystClient`) makes the connection, with the user's own
handshake; the requests of the pages are routed here (see below). What leaves this module is plain data (dicts, lists, numbers, str), shaped as
the protocol's messages, so the pages never see a wire type.

One connection per signed-in user, opened with that user's own handshake; the secret
is used for it and not kept. Pages need several things at once on that connection (a
results stream that can last an hour, and a status every second), so requests are
multiplexed by request id: one reader task routes each answer to its request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from oodida.client.protocol import AnalystClient  # the analysts' client: the one import of it
from oodida.link import ChannelClosed, ChannelError, HandshakeRefused
from oodida.wire import RemoteProtocolError, Role
from oodida.wire.codec import encode_payload
from oodida.wire.framing import encode_frame
from oodida.wire.messages import (
    Cancel,
    Cancelled,
    Error,
    IterationReport,
    Message,
    ResultsEnd,
    ResultsRequest,
    StatusReply,
    StatusRequest,
    VersionsReply,
    VersionsRequest,
)

log = logging.getLogger(__name__)

ROLES = ("analyst", "reader")


class SourceError(Exception):
    """A request failed; `str()` is the reason, the server's where it gave one."""


class SignInRefused(SourceError):
    """The handshake failed: wrong secret, revoked or expired credential, wrong role,
    server unreachable. `str()` says which, in the server's words where it spoke."""


class SessionEnded(SourceError):
    """The connection to the server is gone (the server ended it, or it broke)."""


def plain(value: Any) -> Any:
    """Wire values as JSON-ready builtins: structs as dicts, numpy arrays (typed arrays
    on the wire) as lists, dict keys as str."""
    if isinstance(value, msgspec.Struct):
        return {f: plain(getattr(value, f)) for f in value.__struct_fields__}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return plain(value.tolist())
    if isinstance(value, bytes):
        return value.hex()
    return value


class Source:
    """A live, multiplexed connection to the server as one user."""

    def __init__(self, client: AnalystClient, identity: str, role: str) -> None:
        self.identity = identity
        self.role = role
        self._channel = client.channel
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Queue[Message | BaseException]] = {}
        self.reason: str | None = None  # why the connection ended, once it has
        self.ended = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name=f"dashboard source {identity}")

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        identity: str,
        role: str,
        secret: str,
        ssl_context: ssl.SSLContext | None,
        timeout: float = 10.0,
    ) -> Source:
        """Sign in as `identity` with its own secret; the secret is not kept."""
        if role not in ROLES:
            raise SignInRefused(f"role must be analyst or reader, not {role!r}")
        try:
            client = await AnalystClient.connect(
                host, port, secret, identity=identity, role=Role(role), ssl_context=ssl_context, timeout=timeout
            )
        except HandshakeRefused as exc:
            raise SignInRefused(exc.reason) from None
        except (ChannelError, OSError, ValueError) as exc:
            raise SignInRefused(str(exc)) from None
        return cls(client, identity, role)

    # --- the reader ---------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            while True:
                try:
                    message = await self._channel.recv()
                except RemoteProtocolError as exc:
                    if exc.fatal:
                        raise ChannelClosed(exc.reason) from None
                    if exc.request is not None and exc.request in self._waiting:
                        self._waiting[exc.request].put_nowait(SourceError(f"bad reply from the server: {exc.reason}"))
                    continue
                request = getattr(message, "id", None)
                if isinstance(message, Error) and request is None:
                    # the server speaks to the session, not a request: it is ending it
                    # (a revoked or expired credential) and says why
                    self.reason = f"the server ended the session: {message.reason}"
                    continue
                queue = self._waiting.get(request) if request is not None else None
                if queue is not None:
                    queue.put_nowait(message)
        except ChannelError as exc:
            if self.reason is None:
                self.reason = f"the connection to the server was lost ({exc})"
        except asyncio.CancelledError:
            if self.reason is None:
                self.reason = "signed out"
        finally:
            self.ended.set()
            for queue in self._waiting.values():
                queue.put_nowait(SessionEnded(self.reason or "the connection ended"))
            await self._channel.close()

    # --- requests -------------------------------------------------------------------------

    async def _request(self, make: Any) -> tuple[int, asyncio.Queue[Message | BaseException]]:
        if self.ended.is_set():
            raise SessionEnded(self.reason or "the connection ended")
        request = next(self._ids)
        queue: asyncio.Queue[Message | BaseException] = asyncio.Queue()
        self._waiting[request] = queue
        message = make(request)
        try:
            # Encoded as the protocol says, without the client's own role check: the
            # dashboard forwards what the user asked and the *server* decides whether
            # this role may (a reader's forged cancel is refused there, not only here).
            await self._channel.send_bytes(encode_frame(encode_payload(message)))
        except ChannelError as exc:
            self._waiting.pop(request, None)
            raise SessionEnded(str(exc)) from None
        return request, queue

    async def _next(self, queue: asyncio.Queue[Message | BaseException]) -> Message:
        item = await queue.get()
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, Error):
            raise SourceError(item.reason)
        return item

    async def _ask(self, make: Any, expect: type[Message]) -> Message:
        request, queue = await self._request(make)
        try:
            reply = await self._next(queue)
        finally:
            self._waiting.pop(request, None)
        if not isinstance(reply, expect):
            raise SourceError(f"unexpected reply {type(reply).__name__}")
        return reply

    async def status(self) -> dict[str, Any]:
        """Connected vehicles with their last `VehicleStatus`, and every assignment."""
        reply = await self._ask(lambda i: StatusRequest(id=i), StatusReply)
        return plain(reply)  # type: ignore[no-any-return]

    async def versions(self, assignment: int) -> list[dict[str, Any]]:
        reply = await self._ask(lambda i: VersionsRequest(id=i, assignment=assignment), VersionsReply)
        assert isinstance(reply, VersionsReply)
        return plain(reply.versions)  # type: ignore[no-any-return]

    async def cancel(self, assignment: int) -> str:
        """Ask the server to cancel; returns the assignment's state. A role that may
        not cancel gets the server's refusal as `SourceError`."""
        reply = await self._ask(lambda i: Cancel(id=i, assignment=assignment), Cancelled)
        assert isinstance(reply, Cancelled)
        return reply.state

    async def follow(self, assignment: int, since: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Every closed iteration after `since`, then each new one as it closes; the
        last item is {"end": True, "state": ..., "reason": ...}."""
        request, queue = await self._request(
            lambda i: ResultsRequest(id=i, assignment=assignment, follow=True, since=since)
        )
        try:
            while True:
                message = await self._next(queue)
                if isinstance(message, IterationReport):
                    yield plain(message)
                elif isinstance(message, ResultsEnd):
                    yield {"end": True, "state": message.state, "reason": message.reason}
                    return
        finally:
            self._waiting.pop(request, None)

    async def close(self) -> None:
        self._reader.cancel()
        try:
            await self._reader
        except asyncio.CancelledError:
            pass


def client_tls(ca: str | None) -> ssl.SSLContext | None:
    """The context for dialling the server: its certificate must chain to `ca`; None
    (no CA) is plain TCP, which `link` allows to a loopback server only."""
    if ca is None:
        return None
    from oodida.link.tls import client_context

    return client_context(ca=ca)


def plain_problem(host: str) -> str | None:
    """The platform's one rule for plain TCP (loopback only), for the dashboard's own
    listening socket too."""
    from oodida.link.tls import plain_problem as rule

    return rule(host)
