"""Every message both ways, in the manner of h11's test_io: encode -> bytes -> decode,
and the bytes fed to a real `Connection` whole, one byte at a time, and followed by
the next message."""

from __future__ import annotations

import struct

import pytest

from oodida.wire.codec import decode_payload, decode_value, encode_payload, encode_value
from oodida.wire.connection import CLOSED, NEED_DATA, Connection, Side, State
from oodida.wire.framing import HEADER, encode_frame
from oodida.wire.messages import (
    MESSAGE_TYPES,
    CancelTask,
    Challenge,
    Error,
    ErrorCode,
    Hello,
    Proof,
    Result,
    ResultAck,
    Role,
    StatusRequest,
    Welcome,
)
from oodida.wire.values import NDArray
from tests.wire.examples import (
    ARRAYS,
    EXAMPLE_IDS,
    EXAMPLES,
    FOLLOW_UP,
    ONE_OF_EACH,
    Example,
    Receiver,
    after_receiving,
    endpoints,
    frame,
)

examples = pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)


def test_table_covers_every_message_type() -> None:
    assert set(ONE_OF_EACH) == set(MESSAGE_TYPES.values())
    assert {cls.__struct_config__.tag for cls in ONE_OF_EACH} == set(MESSAGE_TYPES)


@examples
def test_round_trip(example: Example) -> None:
    payload = encode_payload(example.message)
    decoded = decode_payload(payload)
    assert type(decoded) is type(example.message)
    assert decoded == example.message
    assert encode_payload(decoded) == payload  # and back to the very same bytes


SENT_BY_A_PEER = [e for e in EXAMPLES if e.receiver not in (Receiver.CLIENT_HANDSHAKE,
                                                            Receiver.CLIENT_PROVED)]  # challenge(), accept()


@pytest.mark.parametrize("example", SENT_BY_A_PEER, ids=[e.id for e in SENT_BY_A_PEER])
def test_sent_by_the_peer_is_the_same_bytes(example: Example) -> None:
    _, sender = endpoints(example.receiver)
    assert sender is not None
    assert sender.send(example.message) == frame(example.message)


def test_challenge_and_accept_bytes() -> None:
    server = Connection(Side.SERVER)
    server.receive_data(frame(ONE_OF_EACH[Hello]))
    hello = server.next_event()
    assert isinstance(hello, Hello)
    challenge = ONE_OF_EACH[Challenge]
    assert isinstance(challenge, Challenge)
    assert server.challenge(challenge.nonce, challenge.salt, challenge.iterations) == frame(challenge)
    server.receive_data(frame(ONE_OF_EACH[Proof]))
    assert server.next_event() == ONE_OF_EACH[Proof]
    data = server.accept(hello, session="sess-1", server="test-server", signature=b"\x05" * 32)
    assert data == frame(ONE_OF_EACH[Welcome])


@examples
def test_fed_whole(example: Example) -> None:
    conn, _ = endpoints(example.receiver)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(frame(example.message))
    assert conn.next_event() == example.message
    assert conn.next_event() is NEED_DATA
    assert conn.state is not State.CLOSED
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED
    assert conn.state is State.CLOSED
    assert conn.next_event() is CLOSED


@examples
def test_fed_one_byte_at_a_time(example: Example) -> None:
    conn, _ = endpoints(example.receiver)
    data = frame(example.message)
    for i in range(len(data) - 1):
        conn.receive_data(data[i : i + 1])
        assert conn.next_event() is NEED_DATA, f"a message after {i + 1} of {len(data)} bytes"
    conn.receive_data(data[-1:])
    assert conn.next_event() == example.message
    assert conn.next_event() is NEED_DATA


@examples
def test_fed_with_trailing_bytes_of_the_next_message(example: Example) -> None:
    conn, _ = endpoints(example.receiver)
    following = frame(FOLLOW_UP)
    data = frame(example.message) + following
    conn.receive_data(data[:-3])  # all of ours, most of the next one
    assert conn.next_event() == example.message
    after_receiving(conn, example.message)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(data[-3:])
    assert conn.next_event() == FOLLOW_UP
    assert conn.next_event() is NEED_DATA


@examples
def test_fed_together_with_the_next_message(example: Example) -> None:
    conn, _ = endpoints(example.receiver)
    conn.receive_data(frame(example.message) + frame(FOLLOW_UP) + b"")
    assert conn.next_event() == example.message
    after_receiving(conn, example.message)
    assert conn.next_event() == FOLLOW_UP
    assert conn.next_event() is NEED_DATA


ERROR_EXAMPLE = next(e for e in EXAMPLES if e.id == "error")


def test_many_messages_in_one_chunk_come_out_in_order() -> None:
    conn, sender = endpoints(ERROR_EXAMPLE.receiver)  # a server talking to a vehicle
    assert sender is not None
    messages = [e.message for e in EXAMPLES if e.receiver is ERROR_EXAMPLE.receiver] * 3
    conn.receive_data(b"".join(sender.send(m) for m in messages))
    got = []
    while (event := conn.next_event()) is not NEED_DATA:
        got.append(event)
    assert got == messages


# --- the bytes themselves: golden values written by hand from RFC 8949 / RFC 8746 ----------


def text(s: str) -> bytes:
    assert len(s) < 24
    return bytes([0x60 + len(s)]) + s.encode()


GOLDEN = [
    pytest.param(
        CancelTask(assignment=7),
        bytes.fromhex("0000001e a2") + text("type") + text("cancel_task") + text("assignment") + b"\x07",
        id="cancel_task",
    ),
    pytest.param(
        ResultAck(assignment=1, iteration=2),
        bytes.fromhex("00000028 a3")
        + text("type")
        + text("result_ack")
        + text("assignment")
        + b"\x01"
        + text("iteration")
        + b"\x02",
        id="result_ack",
    ),
    pytest.param(
        StatusRequest(id=1000),
        bytes.fromhex("00000013 a2") + text("type") + text("status") + text("id") + bytes.fromhex("1903e8"),
        id="status",
    ),
    pytest.param(  # every field is written, defaults and None included, in declaration order
        Error(reason="x", code=ErrorCode.REFUSED),
        bytes.fromhex("00000026 a4")
        + text("type")
        + text("error")
        + text("reason")
        + text("x")
        + text("code")
        + text("refused")
        + text("id")
        + b"\xf6",
        id="error",
    ),
]


@pytest.mark.parametrize(("message", "data"), GOLDEN)
def test_golden_bytes_both_ways(message: object, data: bytes) -> None:
    assert frame(message) == data  # type: ignore[arg-type]
    assert HEADER.unpack_from(data)[0] == len(data) - 4
    assert decode_payload(data[4:]) == message


def test_decoding_tolerates_omitted_defaults_and_any_key_order() -> None:
    payload = b"\xa2" + text("reason") + text("x") + text("type") + text("error")
    assert decode_payload(payload) == Error(reason="x", code=ErrorCode.BAD_MESSAGE, id=None)


# RFC 8746: tag 64+ on a byte string of little-endian items; tag 40 = [shape, typed array]
ARRAY_GOLDEN = [
    pytest.param(NDArray("<f4", (2,), struct.pack("<2f", 1.0, 2.0)), "d855 48 0000803f00000040", id="f4-1d"),
    pytest.param(NDArray("<f8", (0,), b""), "d856 40", id="f8-empty"),
    pytest.param(NDArray("|u1", (), b"\x07"), "d828 82 80 d840 41 07", id="u1-0d"),
    pytest.param(
        NDArray("<i2", (2, 3), struct.pack("<6h", 1, 2, 3, -1, -2, -3)),
        "d828 82 820203 d84d 4c 010002000300ffff feff fdff",
        id="i2-2d",
    ),
    pytest.param(NDArray("<u2", (0, 3), b""), "d828 82 820003 d845 40", id="u2-empty-2d"),
    pytest.param(NDArray("<u8", (1,), b"\xff" * 8), "d847 48 ffffffffffffffff", id="u8"),
    pytest.param(NDArray("|i1", (1,), b"\x80"), "d848 41 80", id="i1"),
    pytest.param(NDArray("<f2", (1,), b"\x00\x3c"), "d854 42 003c", id="f2"),
]


@pytest.mark.parametrize(("array", "hexdata"), ARRAY_GOLDEN)
def test_typed_arrays_golden_both_ways(array: NDArray, hexdata: str) -> None:
    data = bytes.fromhex(hexdata)
    assert encode_value(array) == data
    assert decode_value(data) == array
    # and inside a message, through the validating decoder
    result = Result(assignment=1, iteration=1, vehicle="v", ok=True, code_hash="h", value=array)
    assert data in encode_payload(result)
    assert decode_payload(encode_payload(result)).value == array


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_arrays_keep_dtype_shape_and_bytes(name: str) -> None:
    array = ARRAYS[name]
    result = Result(assignment=1, iteration=1, vehicle="v", ok=True, code_hash="h", value=[array])
    (back,) = decode_payload(encode_payload(result)).value
    assert (back.dtype, back.shape, back.data) == (array.dtype, array.shape, array.data)
    assert type(back.shape) is tuple and type(back.data) is bytes


def test_a_client_hello_is_what_the_server_reads() -> None:
    client = Connection(Side.CLIENT, role=Role.ANALYST)
    server = Connection(Side.SERVER)
    server.receive_data(client.hello("alice@lab", b"n" * 16, software="cli"))
    assert server.next_event() == Hello(version=1, role=Role.ANALYST, identity="alice@lab", nonce=b"n" * 16,
                                        software="cli")


def test_frame_header_is_big_endian_length() -> None:
    data = frame(FOLLOW_UP)
    assert data[:4] == struct.pack(">I", len(data) - 4)
    assert encode_frame(b"\xa0") == b"\x00\x00\x00\x01\xa0"


def test_a_catalogue_with_a_backwards_range_or_a_nan_rate_is_refused_on_arrival() -> None:
    import cbor2
    import pytest as _pytest

    from oodida.wire.codec import decode_payload
    from oodida.wire.errors import RemoteProtocolError

    def catalogue(**fields):
        return cbor2.dumps({"type": "signal_catalogue", "signals": [{"name": "SPEED.SPEED", **fields}]})

    decode_payload(catalogue(minimum=0.0, maximum=1.0, rate=5.0))
    for bad in ({"minimum": 2.0, "maximum": 1.0}, {"rate": float("nan")}, {"rate": -1.0}, {"unit": "u" * 33}):
        with _pytest.raises(RemoteProtocolError):
            decode_payload(catalogue(**bad))
