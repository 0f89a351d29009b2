"""The handshake's arithmetic (SCRAM-SHA-256, checked against RFC 7677's own example)
and its order in the sans-IO state machine: hello, challenge, proof, welcome, with
every step out of order refused."""

from __future__ import annotations

import base64

import pytest

from oodida.wire import scram
from oodida.wire.connection import Connection, Side, State
from oodida.wire.errors import LocalProtocolError, RemoteProtocolError
from oodida.wire.messages import Challenge, Hello, Proof, Role
from tests.wire.examples import NONCE, challenged, frame

# RFC 7677, section 3: user "user", password "pencil".
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_AUTH_MESSAGE = (
    b"n=user,r=rOprNGfwEbeRWgbNEkqO,"
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
)
RFC_PROOF = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_SIGNATURE = base64.b64decode("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def test_the_arithmetic_is_rfc_7677s() -> None:
    proof, server_signature = scram.client_proof("pencil", RFC_SALT, 4096, RFC_AUTH_MESSAGE)
    assert proof == RFC_PROOF
    assert server_signature == RFC_SERVER_SIGNATURE
    stored = scram.derive("pencil", salt=RFC_SALT, iterations=4096)
    assert scram.verify_proof(stored, RFC_AUTH_MESSAGE, RFC_PROOF) == RFC_SERVER_SIGNATURE


def test_the_server_keeps_nothing_that_makes_a_proof() -> None:
    secret = scram.new_secret()
    stored = scram.derive(secret)
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32  # 256 bits
    assert secret.encode() not in stored.stored_key + stored.server_key + stored.salt
    message = scram.auth_message("vehicle", "car-1", NONCE, NONCE + b"s" * 24, stored.salt, stored.iterations)
    # knowing StoredKey is not enough: a proof built from it as if it were the client key fails
    assert scram.verify_proof(stored, message, stored.stored_key) is None


@pytest.mark.parametrize(
    "change",
    ["secret", "identity", "role", "server nonce", "salt", "iterations"],
)
def test_a_proof_is_bound_to_everything_the_handshake_said(change: str) -> None:
    secret = "the-right-secret-of-car-1"
    stored = scram.derive(secret)
    fields = dict(role="vehicle", identity="car-1", client_nonce=NONCE, nonce=NONCE + b"s" * 24,
                  salt=stored.salt, iterations=stored.iterations)
    proof, expected = scram.client_proof(secret, stored.salt, stored.iterations, scram.auth_message(*fields.values()))
    assert scram.verify_proof(stored, scram.auth_message(*fields.values()), proof) == expected
    if change == "secret":
        proof, _ = scram.client_proof("another-secret", stored.salt, stored.iterations,
                                      scram.auth_message(*fields.values()))
    elif change == "identity":
        fields["identity"] = "car-2"
    elif change == "role":
        fields["role"] = "analyst"
    elif change == "server nonce":  # a replay: the server chose a fresh nonce this time
        fields["nonce"] = NONCE + b"t" * 24
    elif change == "salt":
        fields["salt"] = b"x" * 16
    else:
        fields["iterations"] = 8192
    assert scram.verify_proof(stored, scram.auth_message(*fields.values()), proof) is None


def test_a_proof_of_the_wrong_length_is_refused_not_crashed() -> None:
    stored = scram.derive("s" * 20)
    assert scram.verify_proof(stored, b"m", b"") is None
    assert scram.verify_proof(stored, b"m", b"p" * 64) is None


def test_the_client_derives_its_salted_password_once() -> None:
    scram.salted_password.cache_clear()
    for _ in range(50):
        scram.client_proof("cached-secret-1234", b"salt" * 4, 4096, b"m")
    info = scram.salted_password.cache_info()
    assert (info.misses, info.hits) == (1, 49)


# --- the order, in the state machine ----------------------------------------------------------


def test_a_proof_before_the_challenge_is_fatal() -> None:
    server = Connection(Side.SERVER)
    client = Connection(Side.CLIENT, role=Role.VEHICLE)
    server.receive_data(client.hello("v1", NONCE) + frame(Proof(proof=b"p" * 32)))
    assert isinstance(server.next_event(), Hello)
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.fatal and "'proof'" in info.value.reason
    assert server.state is State.CLOSED


def test_a_second_proof_is_fatal() -> None:
    server, client, _ = challenged()
    server.receive_data(client.proof(b"p" * 32) + frame(Proof(proof=b"q" * 32)))
    assert isinstance(server.next_event(), Proof)
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.fatal and server.state is State.CLOSED


def test_a_second_challenge_is_fatal_for_the_client() -> None:
    _, client, _ = challenged()
    client.receive_data(frame(Challenge(nonce=NONCE * 2, salt=b"s" * 16, iterations=4096)))
    with pytest.raises(RemoteProtocolError) as info:
        client.next_event()
    assert info.value.fatal and client.state is State.CLOSED


def test_our_own_steps_out_of_order_are_our_bugs() -> None:
    client = Connection(Side.CLIENT, role=Role.VEHICLE)
    with pytest.raises(LocalProtocolError):
        client.proof(b"p" * 32)  # before the hello
    client.hello("v1", NONCE)
    with pytest.raises(LocalProtocolError):
        client.proof(b"p" * 32)  # before the challenge
    server = Connection(Side.SERVER)
    with pytest.raises(LocalProtocolError):
        server.challenge(NONCE * 2, b"s" * 16, 4096)  # before a hello
    server, client, _ = challenged()
    with pytest.raises(LocalProtocolError):
        server.challenge(NONCE * 2, b"s" * 16, 4096)  # twice
    client.proof(b"p" * 32)
    with pytest.raises(LocalProtocolError):
        client.proof(b"p" * 32)  # twice


def test_a_server_may_refuse_at_every_step() -> None:
    server, client, _ = challenged()
    server.receive_data(client.proof(b"p" * 32))
    assert isinstance(server.next_event(), Proof)
    client.receive_data(server.reject("wrong proof (wrong secret, or a replayed handshake)"))
    error = client.next_event()
    assert getattr(error, "reason", "").startswith("wrong proof")
    assert client.state is State.CLOSED and server.state is State.CLOSED
