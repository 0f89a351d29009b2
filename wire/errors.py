"""Errors of the protocol layer.

As in h11: the peer's fault (`RemoteProtocolError`) is kept apart from ours
(`LocalProtocolError`). A `ValidationError` is a message that decoded but whose fields
are wrong; the connection may survive it, and the peer gets the reason back.
"""

from __future__ import annotations

from oodida.core.errors import OodidaError


class ProtocolError(OodidaError):
    """Something about the conversation is wrong."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol: a bad frame, a bad message, an illegal message now."""

    def __init__(self, reason: str, *, fatal: bool = True, request: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal
        self.request = request  # the refused message's id, when it had one (for the error reply)


class LocalProtocolError(ProtocolError, ValueError):
    """We tried to do something the protocol does not allow (a bug on our side)."""


class ValidationError(OodidaError, ValueError):
    """A value does not satisfy the schema: wrong type, out of range, too big."""
