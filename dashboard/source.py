"""The dashboard's one door to the server: a signed-in user's live connection.

Everything the dashboard knows comes through here, and this is the only module that
knows which client library speaks the protocol: the analysts' client
(`oodida.client.protocol.AnalystClient`) makes the connection, with the user's own
handshake, and carries the pages' requests. What leaves this module is plain data
(dicts, lists, numbers, str), shaped as the protocol's messages, so the pages never
see a wire type.

One connection per signed-in user, opened with that user's own handshake; the secret
is used for it and not kept. Pages need several things at once on that connection (a
results stream that can last an hour, and a status every second): the client
multiplexes them by request id. It sends what the user asked without refusing it
itself (`refuse_locally=False`): the *server* decides whether this role may (a
reader's forged cancel is refused there, in its words, not only here), and the
client says when and why the connection ended (`wait_closed`), which ends the
dashboard's session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import msgspec

from oodida.client import tls
from oodida.client.protocol import (  # the analysts' client: the one import of it
    AnalystClient,
    ChannelError,
    ConnectionLost,
    HandshakeRefused,
    IterationReport,
    RequestFailed,
    ResultsEnd,
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
    """A live connection to the server as one user."""

    def __init__(self, client: AnalystClient, identity: str, role: str) -> None:
        self.identity = identity
        self.role = role
        self._client = client
        self.reason: str | None = None  # why the connection ended, once it has
        self.ended = asyncio.Event()
        self._watch = asyncio.create_task(self._wait_closed(), name=f"dashboard source {identity}")

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
                host, port, secret, identity=identity, role=role, ssl_context=ssl_context, timeout=timeout,
                refuse_locally=False,
            )
        except HandshakeRefused as exc:
            raise SignInRefused(exc.reason) from None
        except (ChannelError, OSError, ValueError) as exc:
            raise SignInRefused(str(exc)) from None
        return cls(client, identity, role)

    async def _wait_closed(self) -> None:
        try:
            reason = await self._client.wait_closed()
            if self.reason is None:
                self.reason = reason
        finally:
            self.ended.set()

    # --- requests -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        """The client's failures in the pages' terms: the session is over, or this
        request failed (the server's reason)."""
        if self.ended.is_set():
            raise SessionEnded(self.reason or "the connection ended")
        try:
            yield
        except ConnectionLost as exc:
            raise SessionEnded(self._client.closed_reason or str(exc)) from None
        except RequestFailed as exc:
            if exc.code == "auth":  # said to the session, not to a request: the server is ending it
                raise SessionEnded(f"the server ended the session: {exc.reason}") from None
            raise SourceError(exc.reason) from None

    async def status(self) -> dict[str, Any]:
        """Connected vehicles with their last `VehicleStatus`, and every assignment."""
        with self._failures():
            return plain(await self._client.status())  # type: ignore[no-any-return]

    async def versions(self, assignment: int) -> list[dict[str, Any]]:
        with self._failures():
            return plain((await self._client.versions(assignment)).versions)  # type: ignore[no-any-return]

    async def cancel(self, assignment: int) -> str:
        """Ask the server to cancel; returns the assignment's state. A role that may
        not cancel gets the server's refusal as `SourceError`."""
        with self._failures():
            return (await self._client.cancel(assignment)).state

    async def follow(self, assignment: int, since: int = 0) -> AsyncGenerator[dict[str, Any], None]:
        """Every closed iteration after `since`, then each new one as it closes; the
        last item is {"end": True, "state": ..., "reason": ...}."""
        with self._failures():
            stream = self._client.results(assignment, follow=True, since=since)
            try:
                async for message in stream:
                    if isinstance(message, IterationReport):
                        yield plain(message)
                    elif isinstance(message, ResultsEnd):
                        yield {"end": True, "state": message.state, "reason": message.reason}
                        return
            finally:
                await stream.aclose()  # type: ignore[attr-defined]

    async def close(self) -> None:
        if self.reason is None:
            self.reason = "signed out"
        await self._client.close()
        await self._watch


def client_tls(ca: str | None) -> ssl.SSLContext | None:
    """The context for dialling the server: its certificate must chain to `ca`; None
    (no CA) is plain TCP, which the platform allows to a loopback server only."""
    return tls.context_for(ca)


def plain_problem(host: str) -> str | None:
    """The platform's one rule for plain TCP (loopback only), for the dashboard's own
    listening socket too."""
    return tls.plain_problem(host)
