"""The handshake's order, step by step against `wire.states.HANDSHAKE`: both sides move
through the table's states, and at every state every handshake message the table does
not allow there is refused (the peer's: fatal, closed; ours: a LocalProtocolError)."""

from __future__ import annotations

import pytest

from oodida.wire.codec import encode_payload
from oodida.wire.connection import HANDSHAKE_EVENTS, Connection, Side, State
from oodida.wire.errors import LocalProtocolError, RemoteProtocolError
from oodida.wire.framing import encode_frame
from oodida.wire.messages import PROTOCOL_VERSION, Challenge, Hello, Message, Proof, Role, Welcome
from oodida.wire.states import HANDSHAKE, HandshakeState

NONCE = b"n" * 24
HELLO = Hello(version=PROTOCOL_VERSION, role=Role.VEHICLE, identity="v1", nonce=NONCE)
CHALLENGE = Challenge(nonce=NONCE + b"s" * 24, salt=b"salt" * 4, iterations=4096)
PROOF = Proof(proof=b"p" * 32)
WELCOME = Welcome(version=PROTOCOL_VERSION, session="s1")
MESSAGES: list[Message] = [HELLO, CHALLENGE, PROOF, WELCOME]
ORDER = [HandshakeState.START, HandshakeState.GREETED, HandshakeState.CHALLENGED, HandshakeState.PROVED]


def frame(message: Message) -> bytes:
    return encode_frame(encode_payload(message))


def server_at(state: HandshakeState) -> Connection:
    """A server that went through the real steps up to `state`."""
    server = Connection(Side.SERVER)
    steps = ORDER.index(state)
    if steps >= 1:
        server.receive_data(frame(HELLO))
        assert isinstance(server.next_event(), Hello)
    if steps >= 2:
        server.challenge(CHALLENGE.nonce, CHALLENGE.salt, CHALLENGE.iterations)
    if steps >= 3:
        server.receive_data(frame(PROOF))
        assert isinstance(server.next_event(), Proof)
    assert server.handshake is state
    return server


def client_at(state: HandshakeState) -> Connection:
    client = Connection(Side.CLIENT, role=Role.VEHICLE)
    steps = ORDER.index(state)
    if steps >= 1:
        client.hello("v1", NONCE)
    if steps >= 2:
        client.receive_data(frame(CHALLENGE))
        assert isinstance(client.next_event(), Challenge)
    if steps >= 3:
        client.proof(PROOF.proof)
    assert client.handshake is state
    return client


SENT_BY = {Side.CLIENT: {Hello, Proof}, Side.SERVER: {Challenge, Welcome}}
CASES = [
    pytest.param(side, state, message, id=f"{side.value}-{state.value}-{type(message).__name__}")
    for side in Side
    for state in ORDER
    for message in MESSAGES
    if type(message) not in SENT_BY[side]  # what the peer sends us
]


@pytest.mark.parametrize(("side", "state", "message"), CASES)
def test_a_peers_handshake_message_is_taken_only_where_the_table_allows_it(side, state, message) -> None:
    conn = server_at(state) if side is Side.SERVER else client_at(state)
    conn.receive_data(frame(message))
    event = HANDSHAKE_EVENTS[type(message)]
    if HANDSHAKE.allows(state, event):
        assert isinstance(conn.next_event(), type(message))
        assert conn.handshake is HANDSHAKE.next(state, event)
        assert conn.state is (State.READY if isinstance(message, Welcome) else State.HANDSHAKE)
        return
    with pytest.raises(RemoteProtocolError) as caught:
        conn.next_event()
    assert caught.value.fatal  # an unauthenticated peer gets no second chance
    assert f"{type(message).__struct_config__.tag!r} is not allowed from" in caught.value.reason
    assert conn.state is State.CLOSED and conn.handshake is state


@pytest.mark.parametrize("state", ORDER)
def test_a_client_sends_its_steps_only_in_the_tables_order(state: HandshakeState) -> None:
    for message in (HELLO, PROOF):
        client = client_at(state)
        if HANDSHAKE.allows(state, HANDSHAKE_EVENTS[type(message)]):
            client.send(message)
            assert client.handshake is HANDSHAKE.next(state, HANDSHAKE_EVENTS[type(message)])
        else:
            with pytest.raises(LocalProtocolError, match="a client sends one hello, then one proof"):
                client.send(message)
            assert client.handshake is state and client.state is State.HANDSHAKE  # our bug closes nothing


@pytest.mark.parametrize("state", ORDER)
def test_a_server_challenges_and_welcomes_only_in_the_tables_order(state: HandshakeState) -> None:
    server = server_at(state)
    if state is HandshakeState.GREETED:
        server.challenge(CHALLENGE.nonce, CHALLENGE.salt, CHALLENGE.iterations)
        assert server.handshake is HandshakeState.CHALLENGED
    else:
        with pytest.raises(LocalProtocolError, match="challenge"):
            server.challenge(CHALLENGE.nonce, CHALLENGE.salt, CHALLENGE.iterations)
    server = server_at(state)
    if state is HandshakeState.PROVED:
        server.accept(HELLO, session="s1")
        assert server.handshake is HandshakeState.WELCOMED and server.state is State.READY
    else:
        with pytest.raises(LocalProtocolError, match="accept"):
            server.accept(HELLO, session="s1")
        assert server.handshake is state


def test_a_whole_handshake_walks_both_sides_through_the_table() -> None:
    server, client = Connection(Side.SERVER), Connection(Side.CLIENT, role=Role.ANALYST)
    seen = [(server.handshake, client.handshake)]
    server.receive_data(client.hello("a1", NONCE))
    hello = server.next_event()
    assert isinstance(hello, Hello)
    seen.append((server.handshake, client.handshake))
    client.receive_data(server.challenge(NONCE + b"s" * 24, b"salt" * 4, 4096))
    assert isinstance(client.next_event(), Challenge)
    seen.append((server.handshake, client.handshake))
    server.receive_data(client.proof(b"p" * 32))
    assert isinstance(server.next_event(), Proof)
    seen.append((server.handshake, client.handshake))
    client.receive_data(server.accept(hello, session="s1"))
    assert isinstance(client.next_event(), Welcome)
    seen.append((server.handshake, client.handshake))
    assert seen == [(s, s) for s in [*ORDER, HandshakeState.WELCOMED]]
    assert server.state is State.READY and client.state is State.READY
