"""The state machine: what each side may receive and send, per state and role; the
handshake; errors that close and errors that do not."""

from __future__ import annotations

import pytest

from oodida.wire import version_problem
from oodida.wire.codec import decode_payload
from oodida.wire.connection import CLOSED, NEED_DATA, RECEIVABLE, Connection, Side, State
from oodida.wire.errors import LocalProtocolError, RemoteProtocolError
from oodida.wire.messages import (
    MESSAGE_TYPES,
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
from tests.wire.examples import FOLLOW_UP, NONCE, ONE_OF_EACH, challenged, frame, handshake

ALL_TYPES = sorted(MESSAGE_TYPES.values(), key=lambda cls: cls.__name__)
by_type = pytest.mark.parametrize("cls", ALL_TYPES, ids=[c.__name__ for c in ALL_TYPES])

FROM_VEHICLE = {Result, ModuleAck, VehicleStatus, SignalCatalogue, Error}
FROM_ANALYST = {Submit, StatusRequest, ResultsRequest, Cancel, Deploy, VersionsRequest, SignalsRequest, Error}
FROM_READER = {StatusRequest, ResultsRequest, VersionsRequest, SignalsRequest, Error}
FROM = {Role.VEHICLE: FROM_VEHICLE, Role.ANALYST: FROM_ANALYST, Role.READER: FROM_READER}
TO_READER = {StatusReply, IterationReport, ResultsEnd, VersionsReply, SignalsReply, Error}
TO_VEHICLE = {Task, CancelTask, ResultAck, LoadModule, Error}
TO_ANALYST = {
    Submitted, StatusReply, IterationReport, ResultsEnd, Cancelled, Deploying, DeployProgress, DeployEnd,
    VersionsReply, SignalsReply, Error,
}


def hello(role: Role = Role.VEHICLE, version: int = PROTOCOL_VERSION, identity: str = "v1") -> Hello:
    return Hello(version=version, role=role, identity=identity, nonce=NONCE)


def test_the_table_says_what_the_spec_says() -> None:
    assert RECEIVABLE[(Side.SERVER, State.HANDSHAKE, None)] == {Hello, Proof}
    assert RECEIVABLE[(Side.SERVER, State.READY, Role.VEHICLE)] == FROM_VEHICLE
    assert RECEIVABLE[(Side.SERVER, State.READY, Role.ANALYST)] == FROM_ANALYST
    assert RECEIVABLE[(Side.SERVER, State.READY, Role.READER)] == FROM_READER
    assert RECEIVABLE[(Side.CLIENT, State.READY, Role.VEHICLE)] == TO_VEHICLE
    assert RECEIVABLE[(Side.CLIENT, State.READY, Role.ANALYST)] == TO_ANALYST
    assert RECEIVABLE[(Side.CLIENT, State.READY, Role.READER)] == TO_READER
    for role in Role:
        assert RECEIVABLE[(Side.CLIENT, State.HANDSHAKE, role)] == {Challenge, Welcome, Error}
    assert not any(state is State.CLOSED for _, state, _ in RECEIVABLE)


def test_constructor_checks_side_and_role() -> None:
    with pytest.raises(ValueError):
        Connection(Side.SERVER, role=Role.VEHICLE)
    with pytest.raises(ValueError):
        Connection(Side.CLIENT)


# --- server, before the handshake -------------------------------------------------------------


@by_type
def test_server_accepts_only_hello_before_the_handshake(cls: type[Message]) -> None:
    server = Connection(Side.SERVER)
    server.receive_data(frame(ONE_OF_EACH[cls]) + frame(hello()))
    if cls is Hello:
        assert server.next_event() == ONE_OF_EACH[Hello]
        assert server.state is State.HANDSHAKE
        return
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.fatal
    assert "unauthenticated" in info.value.reason and "not allowed" in info.value.reason
    assert server.state is State.CLOSED
    with pytest.raises(RemoteProtocolError):  # the hello behind it is not let in
        server.next_event()
    assert server.next_event() is CLOSED


def test_second_hello_before_accept_is_refused() -> None:
    server = Connection(Side.SERVER)
    server.receive_data(frame(hello()) + frame(hello(identity="v2")))
    assert server.next_event() == hello()
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.fatal
    assert "'hello'" in info.value.reason
    assert server.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        server.accept(hello(), session="s")


def test_accept_sets_the_peer_and_welcomes() -> None:
    server, client, h = challenged(Role.ANALYST, identity="alice")
    server.receive_data(client.proof(b"p" * 32))
    assert server.next_event() == Proof(proof=b"p" * 32)
    assert server.peer_role is None and server.peer_identity is None
    data = server.accept(h, session="abc", server="srv", signature=b"s" * 32)
    assert server.state is State.READY
    assert (server.peer_role, server.peer_identity) == (Role.ANALYST, "alice")
    assert decode_payload(data[4:]) == Welcome(version=PROTOCOL_VERSION, session="abc", server="srv",
                                               signature=b"s" * 32)


def test_accept_needs_a_server_that_received_a_hello() -> None:
    with pytest.raises(LocalProtocolError):
        Connection(Side.SERVER).accept(hello(), session="s")
    with pytest.raises(LocalProtocolError):
        Connection(Side.CLIENT, role=Role.VEHICLE).accept(hello(), session="s")
    server, _, h = challenged()  # challenged, but no proof yet
    with pytest.raises(LocalProtocolError):
        server.accept(h, session="s")
    server, _ = handshake(Role.VEHICLE)
    with pytest.raises(LocalProtocolError):
        server.accept(hello(), session="again")


def test_reject_closes_and_the_client_reads_why() -> None:
    client = Connection(Side.CLIENT, role=Role.VEHICLE)
    server = Connection(Side.SERVER)
    server.receive_data(client.hello("v1", NONCE))
    assert isinstance(server.next_event(), Hello)
    data = server.reject("bad credential")
    assert server.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        server.send(ONE_OF_EACH[Task])
    client.receive_data(data)
    error = client.next_event()
    assert error == Error(reason="bad credential", code=ErrorCode.AUTH)
    assert client.state is State.CLOSED
    assert client.next_event() is CLOSED


def test_version_problem() -> None:
    assert version_problem(hello()) is None
    problem = version_problem(hello(version=PROTOCOL_VERSION + 1))
    assert problem is not None and "version" in problem
    assert version_problem(hello(version=2**100)) is not None


def test_undecodable_bytes_before_the_handshake_are_fatal() -> None:
    server = Connection(Side.SERVER)
    server.receive_data(b"\x00\x00\x00\x02\xff\xff")
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.fatal and "during handshake" in info.value.reason
    assert server.state is State.CLOSED


# --- server, after the handshake ----------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
@by_type
def test_server_ready_receives_what_the_role_may_send(role: Role, cls: type[Message]) -> None:
    server, _ = handshake(role)
    allowed = FROM[role]
    server.receive_data(frame(ONE_OF_EACH[cls]) + frame(FOLLOW_UP))
    if cls in allowed:
        assert server.next_event() == ONE_OF_EACH[cls]
    else:
        with pytest.raises(RemoteProtocolError) as info:
            server.next_event()
        assert not info.value.fatal
        assert f"a {role.value}" in info.value.reason and "not allowed" in info.value.reason
        assert server.state is State.READY
    assert server.next_event() == FOLLOW_UP  # usable either way
    assert server.next_event() is NEED_DATA


# --- client ---------------------------------------------------------------------------------------


def client_after_hello(role: Role = Role.VEHICLE) -> Connection:
    client = Connection(Side.CLIENT, role=role)
    client.hello("v1", NONCE)
    return client


def client_after_proof(role: Role = Role.VEHICLE) -> Connection:
    _, client, _ = challenged(role)
    client.proof(b"p" * 32)
    return client


@pytest.mark.parametrize("role", list(Role))
@by_type
def test_client_after_hello_accepts_a_challenge_or_an_error_only(role: Role, cls: type[Message]) -> None:
    client = client_after_hello(role)
    client.receive_data(frame(ONE_OF_EACH[cls]))
    if cls is Challenge:
        assert client.next_event() == ONE_OF_EACH[Challenge]
        assert client.state is State.HANDSHAKE
    elif cls is Error:
        assert client.next_event() == ONE_OF_EACH[Error]
        assert client.state is State.CLOSED
    else:  # a welcome before we proved anything is a server skipping the challenge
        with pytest.raises(RemoteProtocolError) as info:
            client.next_event()
        assert info.value.fatal
        assert client.state is State.CLOSED


@pytest.mark.parametrize("role", list(Role))
@by_type
def test_client_handshake_accepts_welcome_or_error_only(role: Role, cls: type[Message]) -> None:
    client = client_after_proof(role)
    client.receive_data(frame(ONE_OF_EACH[cls]))
    if cls is Welcome:
        assert client.next_event() == ONE_OF_EACH[Welcome]
        assert client.state is State.READY
    elif cls is Error:
        assert client.next_event() == ONE_OF_EACH[Error]
        assert client.state is State.CLOSED
        assert client.next_event() is CLOSED
    else:
        with pytest.raises(RemoteProtocolError) as info:
            client.next_event()
        assert info.value.fatal
        assert client.state is State.CLOSED


@pytest.mark.parametrize("version", [0, PROTOCOL_VERSION + 1, 2**64])
def test_welcome_with_another_protocol_version_is_fatal(version: int) -> None:
    client = client_after_proof()
    client.receive_data(frame(Welcome(version=version, session="s")))
    with pytest.raises(RemoteProtocolError) as info:
        client.next_event()
    assert info.value.fatal and "version" in info.value.reason
    assert client.state is State.CLOSED


@pytest.mark.parametrize("role", list(Role))
@by_type
def test_client_ready_receives_what_the_server_may_send_it(role: Role, cls: type[Message]) -> None:
    _, client = handshake(role)
    allowed = RECEIVABLE[(Side.CLIENT, State.READY, role)]
    client.receive_data(frame(ONE_OF_EACH[cls]) + frame(FOLLOW_UP))
    if cls in allowed:
        assert client.next_event() == ONE_OF_EACH[cls]
    else:
        with pytest.raises(RemoteProtocolError) as info:
            client.next_event()
        assert not info.value.fatal
        assert client.state is State.READY
    assert client.next_event() == FOLLOW_UP
    assert client.state is State.READY


def test_a_second_welcome_when_ready_is_refused_but_not_fatal() -> None:
    _, client = handshake(Role.VEHICLE)
    client.receive_data(frame(Welcome(version=PROTOCOL_VERSION, session="again")))
    with pytest.raises(RemoteProtocolError) as info:
        client.next_event()
    assert not info.value.fatal and client.state is State.READY


# --- sending --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
@by_type
def test_client_sends_only_what_the_server_may_receive(role: Role, cls: type[Message]) -> None:
    server, client = handshake(role)
    message = ONE_OF_EACH[cls]
    if cls in RECEIVABLE[(Side.SERVER, State.READY, role)]:
        server.receive_data(client.send(message))
        assert server.next_event() == message
    else:
        with pytest.raises(LocalProtocolError):
            client.send(message)
        assert client.state is State.READY  # our mistake is not the connection's death


@pytest.mark.parametrize("role", list(Role))
@by_type
def test_server_sends_only_what_the_client_may_receive(role: Role, cls: type[Message]) -> None:
    server, client = handshake(role)
    message = ONE_OF_EACH[cls]
    if cls in RECEIVABLE[(Side.CLIENT, State.READY, role)]:
        client.receive_data(server.send(message))
        assert client.next_event() == message
    else:
        with pytest.raises(LocalProtocolError):
            server.send(message)
        assert server.state is State.READY


@by_type
def test_client_must_say_hello_first(cls: type[Message]) -> None:
    client = Connection(Side.CLIENT, role=Role.VEHICLE)
    if cls is Hello:
        assert client.send(ONE_OF_EACH[Hello]) == frame(ONE_OF_EACH[Hello])
        with pytest.raises(LocalProtocolError):  # exactly one
            client.send(ONE_OF_EACH[Hello])
    else:
        with pytest.raises(LocalProtocolError):
            client.send(ONE_OF_EACH[cls])


def test_client_hello_must_match_its_role() -> None:
    client = Connection(Side.CLIENT, role=Role.ANALYST)
    with pytest.raises(LocalProtocolError, match="role"):
        client.send(hello(Role.VEHICLE))
    assert client.send(hello(Role.ANALYST))


@by_type
def test_server_sends_nothing_but_an_error_before_the_handshake(cls: type[Message]) -> None:
    server = Connection(Side.SERVER)
    server.receive_data(frame(hello()))
    assert isinstance(server.next_event(), Hello)
    if cls is Error:
        assert server.send(ONE_OF_EACH[Error]) == frame(ONE_OF_EACH[Error])
        assert server.state is State.CLOSED
    else:
        with pytest.raises(LocalProtocolError):
            server.send(ONE_OF_EACH[cls])
        assert server.state is State.HANDSHAKE


def test_only_a_client_says_hello() -> None:
    with pytest.raises(LocalProtocolError):
        Connection(Side.SERVER).hello("v1", NONCE)


def test_sending_after_close_is_refused_except_an_error() -> None:
    server, _ = handshake(Role.VEHICLE)
    server.receive_data(b"")
    assert server.next_event() is CLOSED
    with pytest.raises(LocalProtocolError, match="closed"):
        server.send(ONE_OF_EACH[Task])
    assert server.send(FOLLOW_UP) == frame(FOLLOW_UP)
    assert decode_payload(server.error("why", ErrorCode.INTERNAL, request=3)[4:]) == Error(
        reason="why", code=ErrorCode.INTERNAL, id=3
    )


def test_error_truncates_a_long_reason_to_what_the_peer_accepts() -> None:
    server, client = handshake(Role.VEHICLE)
    client.receive_data(server.error("x" * 10_000))
    error = client.next_event()
    assert isinstance(error, Error) and error.reason == "x" * 4096


# --- a connection that had a fatal error never yields a message again ---------------------------


@pytest.mark.parametrize(
    "poison",
    [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", frame(ONE_OF_EACH[Submit]), b"\x00\x00\x00\x01\xff"],
    ids=["empty-frame", "oversize-frame", "submit-first", "garbage"],
)
def test_after_a_fatal_error_nothing_more_comes_out(poison: bytes) -> None:
    server = Connection(Side.SERVER)
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(poison)  # a bad header is refused right here
        server.next_event()
    assert info.value.fatal
    assert server.state is State.CLOSED
    for _ in range(3):
        try:
            server.receive_data(frame(hello()))
        except RemoteProtocolError:
            pass
        try:
            event = server.next_event()
        except RemoteProtocolError as exc:
            assert exc.fatal
        else:
            assert event is CLOSED
    assert server.state is State.CLOSED
