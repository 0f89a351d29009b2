"""The analyst's side of the protocol: submit, status, results, cancel, deploy, versions.

Used by the `oodida` CLI, the demo and the tests; one request at a time per client,
answers matched by request id. A refusal comes back as `RequestFailed` carrying the
server's reason, never as a bare protocol error.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from pathlib import Path
from typing import Any, AsyncIterator

from link import Channel, connect
from link.credfile import load_client_credentials
from oodida.errors import OodidaError
from wire import LocalProtocolError, RemoteProtocolError, Role
from wire.messages import (
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


class RequestFailed(OodidaError):
    """The server refused or could not carry out a request; `str()` is its reason."""

    def __init__(self, reason: str, code: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class AnalystClient:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        secret: str,
        *,
        identity: str,
        role: Role = Role.ANALYST,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
    ) -> AnalystClient:
        """Connect as `identity` (an analyst, or a reader); TLS unless `ssl_context`
        is None, which only a loopback host may use."""
        channel, _ = await connect(
            host, port, role=role, identity=identity, secret=secret, software="oodida-cli/0.1", timeout=timeout,
            ssl_context=ssl_context,
        )
        return cls(channel)

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
        await self.channel.close()

    async def __aenter__(self) -> AnalystClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _recv(self, request: int) -> Message:
        while True:
            try:
                message = await self.channel.recv()
            except RemoteProtocolError as exc:
                raise RequestFailed(f"bad reply from the server: {exc.reason}") from None
            if isinstance(message, Error):
                if message.id in (None, request):
                    raise RequestFailed(message.reason, message.code.value)
                continue
            if getattr(message, "id", None) == request:
                return message

    async def _send(self, message: Message) -> None:
        """Send, or refuse here what our role may not ask (a reader's submit): the
        server would refuse it too, this says so without the round trip."""
        try:
            await self.channel.send(message)
        except LocalProtocolError:
            role = self.channel.conn.our_role
            raise RequestFailed(
                f"a {role.value if role else 'client'} may not send {message.__struct_config__.tag!r}", "unexpected"
            ) from None

    async def _ask(self, message: Message, request: int, expect: type[Message]) -> Message:
        async with self._lock:
            await self._send(message)
            reply = await self._recv(request)
        if not isinstance(reply, expect):
            raise RequestFailed(f"unexpected reply {type(reply).__name__} to {type(message).__name__}")
        return reply

    async def submit(self, spec: AssignmentSpec) -> Submitted:
        request = next(self._ids)
        reply = await self._ask(Submit(id=request, spec=spec), request, Submitted)
        assert isinstance(reply, Submitted)
        return reply

    async def status(self) -> StatusReply:
        request = next(self._ids)
        reply = await self._ask(StatusRequest(id=request), request, StatusReply)
        assert isinstance(reply, StatusReply)
        return reply

    async def cancel(self, assignment: int) -> Cancelled:
        request = next(self._ids)
        reply = await self._ask(Cancel(id=request, assignment=assignment), request, Cancelled)
        assert isinstance(reply, Cancelled)
        return reply

    async def results(
        self, assignment: int, *, follow: bool = False, since: int = 0
    ) -> AsyncIterator[IterationReport | ResultsEnd]:
        """Each stored (and, with `follow`, each new) iteration; the last item is the
        `ResultsEnd` that gives the assignment's state."""
        request = next(self._ids)
        async with self._lock:
            await self._send(ResultsRequest(id=request, assignment=assignment, follow=follow, since=since))
            while True:
                message = await self._recv(request)
                if isinstance(message, IterationReport):
                    yield message
                elif isinstance(message, ResultsEnd):
                    yield message
                    return

    async def deploy(self, **fields: Any) -> AsyncIterator[Deploying | DeployProgress | DeployEnd]:
        """Deploy (or roll back to) a module version: `Deploying`, then
        `DeployProgress` with the vehicles' answers as they arrive, then `DeployEnd`. The fields are
        those of `wire.messages.Deploy` but `id`. A refusal raises `RequestFailed`
        with the reasons (and nothing changed on the server)."""
        request = next(self._ids)
        async with self._lock:
            await self._send(Deploy(id=request, **fields))
            while True:
                message = await self._recv(request)
                if not isinstance(message, (Deploying, DeployProgress, DeployEnd)):
                    raise RequestFailed(f"unexpected reply {type(message).__name__} to a deploy")
                yield message
                if isinstance(message, DeployEnd):
                    return

    async def versions(self, assignment: int) -> VersionsReply:
        request = next(self._ids)
        reply = await self._ask(VersionsRequest(id=request, assignment=assignment), request, VersionsReply)
        assert isinstance(reply, VersionsReply)
        return reply

    async def signals(self, vehicle: str | None = None) -> SignalsReply:
        """The signal catalogue: every signal each vehicle (or only `vehicle`) reported
        it can serve, with unit, range and measured rate (`wire.messages.SignalInfo`)."""
        request = next(self._ids)
        reply = await self._ask(SignalsRequest(id=request, vehicle=vehicle), request, SignalsReply)
        assert isinstance(reply, SignalsReply)
        return reply
