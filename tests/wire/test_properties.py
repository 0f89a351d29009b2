"""Property tests: whatever bytes arrive, only our protocol errors come out; however a
valid stream is cut, the same messages come out; any plain value either survives the
trip exactly or is refused with a reason."""

from __future__ import annotations

import itertools
import re
from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oodida.wire.codec import decode_payload, encode_payload, encode_value
from oodida.wire.connection import CLOSED, NEED_DATA, Connection, Side, State
from oodida.wire.errors import LocalProtocolError, RemoteProtocolError
from oodida.wire.framing import encode_frame
from oodida.wire.messages import Result, Role
from oodida.wire.values import DTYPE_TAGS, NDArray
from tests.wire.examples import (
    EXAMPLES,
    FOLLOW_UP,
    RESULT_MAP,
    Receiver,
    endpoints,
    frame,
    handshake,
    result_with_raw_value,
    same,
)

common = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def drain(conn: Connection) -> list[Any]:
    """Read every event that is ready; go on past non-fatal errors, stop at a fatal one."""
    events: list[Any] = []
    for _ in range(10_000):
        try:
            event = conn.next_event()
        except RemoteProtocolError as exc:
            events.append(exc)
            if exc.fatal:
                assert conn.state is State.CLOSED
                return events
            assert conn.state is State.READY
            continue
        if event is NEED_DATA or event is CLOSED:
            return events
        events.append(event)
    raise AssertionError("next_event never ran out")


def feed(conn: Connection, chunks: list[bytes]) -> list[Any]:
    events: list[Any] = []
    for chunk in [*chunks, b""]:
        try:
            conn.receive_data(chunk)
        except RemoteProtocolError as exc:
            assert exc.fatal and conn.state is State.CLOSED
            events.append(exc)
            break
        events += drain(conn)
        if events and isinstance(events[-1], RemoteProtocolError) and events[-1].fatal:
            break
    return events


def cut(data: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted(p % (len(data) + 1) for p in points), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]  # b"" would mean end of stream


def ready(kind: str) -> Connection:
    if kind == "server-handshake":
        return Connection(Side.SERVER)
    server, client = handshake(Role.VEHICLE if "vehicle" in kind else Role.ANALYST)
    return server if kind.startswith("server") else client


KINDS = ["server-handshake", "server-vehicle", "server-analyst", "client-vehicle", "client-analyst"]


# --- nothing but protocol errors ----------------------------------------------------------------


@common
@given(data=st.binary(max_size=300), points=st.lists(st.integers(min_value=0), max_size=6))
def test_random_bytes_to_a_new_server(data: bytes, points: list[int]) -> None:
    events = feed(Connection(Side.SERVER), cut(data, points))
    assert all(isinstance(e, RemoteProtocolError) for e in events[1:])  # at most a hello, then dead


@common
@given(
    kind=st.sampled_from(KINDS),
    payloads=st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=5),
    points=st.lists(st.integers(min_value=0), max_size=6),
)
def test_random_payloads_in_valid_frames(kind: str, payloads: list[bytes], points: list[int]) -> None:
    """Past the framing, straight into the CBOR decoder and the validation."""
    conn = ready(kind)
    data = b"".join(encode_frame(p) for p in payloads) + frame(FOLLOW_UP)
    events = feed(conn, cut(data, points))
    if kind == "server-handshake":  # the first bad one is the last
        assert isinstance(events[-1], RemoteProtocolError) and events[-1].fatal
    else:  # each frame gives a message or a non-fatal error, and the stream goes on
        assert len(events) == len(payloads) + 1
        assert not any(isinstance(e, RemoteProtocolError) and e.fatal for e in events)
        assert events[-1] == FOLLOW_UP


VALID_FRAMES = [(e.receiver, frame(e.message)) for e in EXAMPLES]


@common
@given(
    which=st.integers(min_value=0, max_value=len(VALID_FRAMES) - 1),
    edits=st.lists(
        st.tuples(st.sampled_from(["flip", "insert", "delete"]), st.integers(min_value=0), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    ),
    payload_only=st.booleans(),
)
def test_mutated_valid_messages(which: int, edits: list[tuple[str, int, int]], payload_only: bool) -> None:
    """Valid messages with a few bytes changed: near misses reach the deepest checks."""
    receiver, data = VALID_FRAMES[which]
    body = bytearray(data[4:] if payload_only else data)
    for op, pos, byte in edits:
        pos %= len(body) + 1
        if op == "insert":
            body.insert(pos, byte)
        elif body and pos < len(body):
            if op == "flip":
                body[pos] ^= byte or 1
            else:
                del body[pos]
    if payload_only:
        if not body:
            return
        try:
            message = decode_payload(bytes(body))
        except RemoteProtocolError as exc:
            assert not exc.fatal and exc.reason
        else:
            assert decode_payload(encode_payload(message)) == message
        data = encode_frame(bytes(body))
    else:
        data = bytes(body)
    conn, _ = endpoints(receiver)
    try:
        feed(conn, [data])
    except LocalProtocolError:
        raise AssertionError("a peer's bytes made us blame ourselves") from None


# --- however the stream is cut ------------------------------------------------------------------

STREAMS: dict[Receiver, list[Any]] = {}
for _e in EXAMPLES:
    if _e.receiver not in (Receiver.SERVER_HANDSHAKE, Receiver.SERVER_CHALLENGED, Receiver.CLIENT_HANDSHAKE,
                           Receiver.CLIENT_PROVED):  # one message each, not a stream
        STREAMS.setdefault(_e.receiver, []).append(_e.message)


@common
@given(
    receiver=st.sampled_from(sorted(STREAMS, key=lambda r: r.value)),
    picks=st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=8),
    points=st.lists(st.integers(min_value=0), max_size=12),
)
def test_random_splits_give_the_same_messages(receiver: Receiver, picks: list[int], points: list[int]) -> None:
    conn, sender = endpoints(receiver)
    assert sender is not None
    messages = [STREAMS[receiver][i % len(STREAMS[receiver])] for i in picks]
    data = b"".join(sender.send(m) for m in messages)
    events = feed(conn, cut(data, points))
    assert events == messages
    assert conn.next_event() is CLOSED


@common
@given(points=st.lists(st.integers(min_value=0), max_size=10))
def test_random_splits_through_the_handshake(points: list[int]) -> None:
    client = Connection(Side.CLIENT, role=Role.VEHICLE)
    server = Connection(Side.SERVER)
    data = client.hello("v1", b"n" * 24)
    for chunk in cut(data, points):
        server.receive_data(chunk)
        event = server.next_event()
    assert event.__class__.__name__ == "Hello" and server.next_event() is NEED_DATA
    for chunk in cut(server.challenge(b"n" * 48, b"s" * 16, 4096), points):
        client.receive_data(chunk)
        challenge = client.next_event()
    assert challenge.__class__.__name__ == "Challenge"
    for chunk in cut(client.proof(b"p" * 32), points):
        server.receive_data(chunk)
        proof = server.next_event()
    assert proof.__class__.__name__ == "Proof" and server.next_event() is NEED_DATA
    reply = server.accept(event, session="s")  # type: ignore[arg-type]
    for chunk in cut(reply, points):
        client.receive_data(chunk)
        client.next_event()
    assert client.state is State.READY


# --- any plain value: the same after the trip, or refused ---------------------------------------


@st.composite
def ndarrays(draw: st.DrawFn) -> NDArray:
    dtype = draw(st.sampled_from(sorted(DTYPE_TAGS)))
    shape = tuple(draw(st.lists(st.integers(min_value=0, max_value=3), max_size=4)))
    size = 1
    for n in shape:
        size *= n
    data = draw(st.binary(min_size=size * DTYPE_TAGS[dtype][1], max_size=size * DTYPE_TAGS[dtype][1]))
    return NDArray(dtype, shape, data)


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and infinities included: they are allowed
    st.text(max_size=20),
    st.binary(max_size=20),
    ndarrays(),
)
keys = st.one_of(st.text(max_size=8), st.text(max_size=8), st.text(max_size=8), st.integers(), st.binary(max_size=4))
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=5),
        st.lists(children, min_size=1, max_size=1).map(lambda x: [[[[[[[[x]]]]]]]]),  # goes deep fast
    ),
    max_leaves=40,
)


def acceptable(value: Any, depth: int = 0) -> bool:
    """What check_value and the decoder let through: str keys, at most 32 levels."""
    if depth > 32:
        return False
    if isinstance(value, list):
        return all(acceptable(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(type(k) is str and acceptable(v, depth + 1) for k, v in value.items())
    return True


@common
@given(value=values)
def test_any_value_round_trips_or_is_refused(value: Any) -> None:
    payload = result_with_raw_value(encode_value(value))
    try:
        message = decode_payload(payload)
    except RemoteProtocolError as exc:
        assert not exc.fatal
        assert not acceptable(value), f"refused a fine value: {exc.reason}"
        assert re.search(r"key|nested|depth", exc.reason), exc.reason
        return
    assert acceptable(value)
    assert isinstance(message, Result)
    assert same(message.value, value)
    assert encode_value(message.value) == encode_value(value)  # and to the very same bytes again


IDENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")


@common
@given(
    vehicle=st.one_of(
        st.from_regex(IDENTITY, fullmatch=True),
        st.text(alphabet="aZ09._:@-\n \t/é", max_size=70),
        st.from_regex(IDENTITY, fullmatch=True).map(lambda s: s + "\n"),
    )
)
def test_identity_is_accepted_exactly_when_it_matches_whole(vehicle: str) -> None:
    payload = cbor2.dumps({**RESULT_MAP, "vehicle": vehicle})
    try:
        message = decode_payload(payload)
    except RemoteProtocolError as exc:
        assert IDENTITY.fullmatch(vehicle) is None, exc.reason
        assert "$.vehicle" in exc.reason
    else:
        assert IDENTITY.fullmatch(vehicle) is not None
        assert isinstance(message, Result) and message.vehicle == vehicle


@common
@given(
    reason=st.text(max_size=300),
    code=st.sampled_from(["bad_message", "unexpected", "auth", "version", "not_found", "refused", "internal"]),
    request=st.none() | st.integers(min_value=0, max_value=2**53),
    points=st.lists(st.integers(min_value=0), max_size=4),
)
def test_random_errors_cross_a_real_pair(reason: str, code: str, request: int | None, points: list[int]) -> None:
    server, client = handshake(Role.ANALYST)
    data = server.error(reason, code, request)  # type: ignore[arg-type]
    events = feed(client, cut(data, points))
    assert len(events) == 1
    error = events[0]
    assert (error.reason, error.code, error.id) == (reason, code, request)


def test_acceptable_matches_the_limits() -> None:
    deep: Any = 1
    for _ in range(33):
        deep = [deep]
    assert not acceptable({1: 2}) and not acceptable(deep) and acceptable(deep[0])
    assert acceptable({"a": [NDArray("<f8", (), b"\x00" * 8)]})
