"""The protocol as a state machine over bytes, in the manner of h11.

`Connection` takes bytes (`receive_data`), hands out messages (`next_event`) and turns
messages into bytes (`send`). It does no I/O: the agent, the server, the CLI and the
tests drive the same object. Which message may arrive in which state, for which role,
is the table `RECEIVABLE` below; anything else is the peer's protocol error.
"""

from __future__ import annotations

import enum
from typing import Final

from oodida.wire.codec import decode_payload, encode_payload
from oodida.wire.errors import LocalProtocolError, RemoteProtocolError
from oodida.wire.framing import DEFAULT_MAX_FRAME, HEADER, FrameDecoder, encode_frame
from oodida.wire.messages import (
    PROTOCOL_VERSION,
    Cancel,
    Cancelled,
    CancelTask,
    Challenge,
    Deploy,
    DeployEnd,
    Deploying,
    DeployProgress,
    Error,
    ErrorCode,
    Hello,
    IterationReport,
    LoadModule,
    Message,
    ModuleAck,
    Proof,
    Result,
    ResultAck,
    ResultsEnd,
    ResultsRequest,
    Role,
    SignalCatalogue,
    SignalsReply,
    SignalsRequest,
    StatusReply,
    StatusRequest,
    Submit,
    Submitted,
    Task,
    VehicleStatus,
    VersionsReply,
    VersionsRequest,
    Welcome,
)
from oodida.wire.states import HANDSHAKE, HandshakeEvent, HandshakeState


class Side(enum.Enum):
    CLIENT = "client"  # agents and analysts: they dial and say hello
    SERVER = "server"


class State(enum.Enum):
    HANDSHAKE = "handshake"  # hello, challenge, proof, then welcome (or an error)
    READY = "ready"
    CLOSED = "closed"


class Sentinel(enum.Enum):
    NEED_DATA = "need data"  # no complete message buffered yet
    CLOSED = "closed"  # the peer ended the stream cleanly


NEED_DATA: Final = Sentinel.NEED_DATA
CLOSED: Final = Sentinel.CLOSED

# The largest frame before the handshake completed. A hello is a few hundred bytes;
# allowing `max_frame` (16 MiB) to a peer nobody has authenticated let each of a flood
# of connections make the server buffer 16 MiB.
HANDSHAKE_MAX_FRAME = 64 * 1024

# (our side, state, peer's role) -> message types the peer may send us
RECEIVABLE: dict[tuple[Side, State, Role | None], frozenset[type[Message]]] = {
    (Side.SERVER, State.HANDSHAKE, None): frozenset({Hello, Proof}),
    (Side.SERVER, State.READY, Role.VEHICLE): frozenset({Result, ModuleAck, VehicleStatus, SignalCatalogue, Error}),
    (Side.SERVER, State.READY, Role.ANALYST): frozenset(
        {Submit, StatusRequest, ResultsRequest, Cancel, Deploy, VersionsRequest, SignalsRequest, Error}
    ),
    (Side.SERVER, State.READY, Role.READER): frozenset(
        {StatusRequest, ResultsRequest, VersionsRequest, SignalsRequest, Error}
    ),
    (Side.CLIENT, State.HANDSHAKE, Role.VEHICLE): frozenset({Challenge, Welcome, Error}),
    (Side.CLIENT, State.HANDSHAKE, Role.ANALYST): frozenset({Challenge, Welcome, Error}),
    (Side.CLIENT, State.HANDSHAKE, Role.READER): frozenset({Challenge, Welcome, Error}),
    (Side.CLIENT, State.READY, Role.VEHICLE): frozenset({Task, CancelTask, ResultAck, LoadModule, Error}),
    (Side.CLIENT, State.READY, Role.ANALYST): frozenset(
        {Submitted, StatusReply, IterationReport, ResultsEnd, Cancelled, Deploying, DeployProgress, DeployEnd,
         VersionsReply, SignalsReply, Error}
    ),
    (Side.CLIENT, State.READY, Role.READER): frozenset(
        {StatusReply, IterationReport, ResultsEnd, VersionsReply, SignalsReply, Error}
    ),
}

# The handshake's order within HANDSHAKE is the table `wire.states.HANDSHAKE`, over
# these messages; which side sends which is RECEIVABLE's (a server receives the hello
# and the proof, a client the challenge and the welcome). An error may come at any
# step, from the server: it is no step, it ends the handshake.
HANDSHAKE_EVENTS: dict[type[Message], HandshakeEvent] = {
    Hello: HandshakeEvent.HELLO,
    Challenge: HandshakeEvent.CHALLENGE,
    Proof: HandshakeEvent.PROOF,
    Welcome: HandshakeEvent.WELCOME,
}
_CLIENT_SENDS = frozenset({HandshakeEvent.HELLO, HandshakeEvent.PROOF})


def _handshake_allows(state: HandshakeState, message: type[Message]) -> bool:
    event = HANDSHAKE_EVENTS.get(message)
    return event is not None and HANDSHAKE.allows(state, event)


# RECEIVABLE within HANDSHAKE narrowed by the handshake's state, derived once from the
# two tables: (our side, peer's role, handshake state) -> message types the peer may send
_HANDSHAKE_RECEIVABLE: dict[tuple[Side, Role | None, HandshakeState], frozenset[type[Message]]] = {
    (side, role, step): frozenset(m for m in allowed if m is Error or _handshake_allows(step, m))
    for (side, state, role), allowed in RECEIVABLE.items()
    if state is State.HANDSHAKE
    for step in HandshakeState
}


class Connection:
    """One end of one conversation.

    A client is built knowing its role and starts by sending `Hello`; the server
    answers with a `Challenge` (via `challenge`), the client with a `Proof` (via
    `proof`), and the server with `Welcome` (via `accept`) or an `Error` (via `reject`,
    at any step), which closes the connection. The proof's arithmetic is
    `wire.scram`'s; this object only keeps the order. Until the welcome nothing else
    is accepted, and any protocol error is fatal: an unauthenticated peer gets no
    second chance.
    """

    def __init__(
        self,
        side: Side,
        *,
        role: Role | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        handshake_max_frame: int = HANDSHAKE_MAX_FRAME,
    ) -> None:
        if (side is Side.CLIENT) != (role is not None):
            raise ValueError("a client connection needs its role; a server learns it from the hello")
        self.side = side
        self.peer_role: Role | None = None if side is Side.SERVER else role
        self.our_role = role
        self.peer_identity: str | None = None
        self.state = State.HANDSHAKE
        self.max_frame = max_frame
        self._frames = FrameDecoder(max_frame=min(max_frame, handshake_max_frame))  # raised by _ready()
        self.handshake = HandshakeState.START  # how far the handshake went, see wire.states.HANDSHAKE

    # --- receiving ------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the peer; b"" when it closed its side."""
        try:
            self._frames.receive_data(data)
        except RemoteProtocolError as exc:
            handshake = self.state is State.HANDSHAKE
            self.state = State.CLOSED
            if handshake:
                raise RemoteProtocolError(f"{exc.reason} (during handshake)", fatal=True) from None
            raise

    def next_event(self) -> Message | Sentinel:
        """The next message from the peer, NEED_DATA, or CLOSED at a clean end.

        Raises `RemoteProtocolError` for a bad frame or message. When `fatal` is
        False the connection goes on (reply with an error and read on); when True,
        or before the handshake completed, the connection is closed.
        """
        if self.state is State.CLOSED and not self._frames.buffered:
            return CLOSED
        try:
            payload = self._frames.next_frame()
        except RemoteProtocolError:
            self.state = State.CLOSED
            raise
        if payload is None:
            if self._frames.eof:
                self.state = State.CLOSED
                return CLOSED
            return NEED_DATA
        try:
            message = decode_payload(payload)
        except RemoteProtocolError as exc:
            if self.state is State.HANDSHAKE:
                self.state = State.CLOSED
                raise RemoteProtocolError(f"{exc.reason} (during handshake)", fatal=True) from None
            raise
        self._check_receivable(message)
        return message

    def _check_receivable(self, message: Message) -> None:
        role = self.peer_role if (self.side is Side.CLIENT or self.state is State.READY) else None
        if self.state is State.HANDSHAKE:
            allowed = _HANDSHAKE_RECEIVABLE.get((self.side, role, self.handshake), frozenset())
        else:
            allowed = RECEIVABLE.get((self.side, self.state, role), frozenset())
        if type(message) not in allowed:
            fatal = self.state is not State.READY
            if fatal:
                self.state = State.CLOSED
            who = f"a {role.value}" if role else "an unauthenticated peer"
            raise RemoteProtocolError(
                f"{type(message).__struct_config__.tag!r} is not allowed from {who} now (state {self.state.value})",
                fatal=fatal,
                request=getattr(message, "id", None),
            )
        if isinstance(message, (Hello, Proof, Challenge)):
            self.handshake = HANDSHAKE.next(self.handshake, HANDSHAKE_EVENTS[type(message)])
        elif isinstance(message, Welcome) and self.state is State.HANDSHAKE:
            if message.version != PROTOCOL_VERSION:
                self.state = State.CLOSED
                raise RemoteProtocolError(
                    f"server speaks protocol version {message.version}, we speak {PROTOCOL_VERSION}", fatal=True
                )
            self.handshake = HANDSHAKE.next(self.handshake, HandshakeEvent.WELCOME)
            self._ready()
        elif isinstance(message, Error) and self.state is State.HANDSHAKE:
            self.state = State.CLOSED

    def _ready(self) -> None:
        """The handshake completed: from now on frames up to `max_frame` are read."""
        self.state = State.READY
        self._frames.max_frame = self.max_frame

    # --- sending ----------------------------------------------------------------

    def send(self, message: Message, *, encoded: bytes | None = None) -> bytes:
        """The bytes to write for `message`; refuses what the protocol forbids now.

        `encoded`: `encode_message(message)`, made once for many connections (one task
        to a whole fleet): the same checks, then those bytes, not a fresh encoding."""
        if self.state is State.CLOSED and not (isinstance(message, Error)):
            raise LocalProtocolError(f"cannot send {type(message).__name__}: connection is closed")
        if self.side is Side.CLIENT and self.state is State.HANDSHAKE:
            event = HANDSHAKE_EVENTS.get(type(message))
            if event not in _CLIENT_SENDS or not _handshake_allows(self.handshake, type(message)):
                raise LocalProtocolError(
                    "a client sends one hello, then one proof after the challenge, then waits for welcome"
                )
            if isinstance(message, Hello) and message.role is not self.our_role:
                raise LocalProtocolError(f"hello says role {message.role}, connection was made as {self.our_role}")
            self.handshake = HANDSHAKE.next(self.handshake, HANDSHAKE_EVENTS[type(message)])
        elif self.side is Side.SERVER and self.state is State.HANDSHAKE:
            if isinstance(message, Welcome):
                raise LocalProtocolError("use accept() to welcome a peer")
            if isinstance(message, Challenge):
                raise LocalProtocolError("use challenge() to challenge a peer")
            if not isinstance(message, Error):
                raise LocalProtocolError(f"cannot send {type(message).__name__} before the handshake completed")
            self.state = State.CLOSED
        elif self.state is State.READY:
            # what we may send is what the other side may receive (the same table)
            other = Side.SERVER if self.side is Side.CLIENT else Side.CLIENT
            if type(message) not in RECEIVABLE[(other, State.READY, self.peer_role)]:
                who = f"{self.side.value} of a {self.peer_role.value}" if self.peer_role else self.side.value
                raise LocalProtocolError(f"a {who} connection cannot send {type(message).__name__}")
        if encoded is not None:
            if len(encoded) - HEADER.size > self.max_frame:
                raise LocalProtocolError(
                    f"frame of {len(encoded) - HEADER.size} bytes exceeds the maximum of {self.max_frame}"
                )
            return encoded
        return encode_frame(encode_payload(message), max_frame=self.max_frame)

    def challenge(self, nonce: bytes, salt: bytes, iterations: int) -> bytes:
        """Answer the hello the application has looked up: the peer must now prove it
        holds the credential (`nonce` is the client's nonce followed by ours)."""
        if self.side is not Side.SERVER or self.state is not State.HANDSHAKE or not HANDSHAKE.allows(
            self.handshake, HandshakeEvent.CHALLENGE
        ):
            raise LocalProtocolError("challenge() is for a server that received a hello and sent no challenge")
        self.handshake = HANDSHAKE.next(self.handshake, HandshakeEvent.CHALLENGE)
        message = Challenge(nonce=nonce, salt=salt, iterations=iterations)
        return encode_frame(encode_payload(message), max_frame=self.max_frame)

    def accept(self, hello: Hello, *, session: str, server: str = "", signature: bytes = b"") -> bytes:
        """Welcome the peer whose proof the application has checked; `signature` is
        the server's proof to the client (SCRAM's ServerSignature)."""
        if self.side is not Side.SERVER or self.state is not State.HANDSHAKE or not HANDSHAKE.allows(
            self.handshake, HandshakeEvent.WELCOME
        ):
            raise LocalProtocolError("accept() is for a server that received a hello and then a proof")
        self.handshake = HANDSHAKE.next(self.handshake, HandshakeEvent.WELCOME)
        self.peer_role = hello.role
        self.peer_identity = hello.identity
        self._ready()
        welcome = Welcome(version=PROTOCOL_VERSION, session=session, server=server, signature=signature)
        return encode_frame(encode_payload(welcome), max_frame=self.max_frame)

    def reject(self, reason: str, code: ErrorCode = ErrorCode.AUTH) -> bytes:
        """Refuse the peer; the connection is closed after these bytes."""
        data = encode_frame(encode_payload(Error(reason=reason, code=code)), max_frame=self.max_frame)
        self.state = State.CLOSED
        return data

    def hello(self, identity: str, nonce: bytes, *, software: str = "") -> bytes:
        """The client's first bytes; `nonce` is fresh random bytes (wire.scram.new_nonce)."""
        if self.our_role is None:
            raise LocalProtocolError("only a client says hello")
        return self.send(
            Hello(version=PROTOCOL_VERSION, role=self.our_role, identity=identity, nonce=nonce, software=software)
        )

    def proof(self, proof: bytes) -> bytes:
        """The client's answer to the challenge."""
        return self.send(Proof(proof=proof))

    def error(self, reason: str, code: ErrorCode = ErrorCode.BAD_MESSAGE, request: int | None = None) -> bytes:
        """An error reply; allowed in every state (it is how we say why we close)."""
        payload = encode_payload(Error(reason=reason[:4096], code=code, id=request))
        return encode_frame(payload, max_frame=self.max_frame)


def encode_message(message: Message, *, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """One message's frame, for `Connection.send(message, encoded=...)` on many
    connections: encoding a task costs more than the rest of sending it, and a fleet
    of ten thousand gets the same task."""
    return encode_frame(encode_payload(message), max_frame=max_frame)


def version_problem(hello: Hello) -> str | None:
    """Why we cannot talk to this peer's protocol version, or None."""
    if hello.version != PROTOCOL_VERSION:
        return f"protocol version {hello.version} is not supported; this server speaks {PROTOCOL_VERSION}"
    return None
