"""Length-prefixed frames: partial headers, the size limit checked before the body,
empty frames, end of stream, and a decoder that stays dead after an error."""

from __future__ import annotations

import struct

import pytest

from oodida.wire.codec import encode_payload
from oodida.wire.connection import CLOSED, NEED_DATA, Connection, Side, State
from oodida.wire.errors import LocalProtocolError, RemoteProtocolError
from oodida.wire.framing import DEFAULT_MAX_FRAME, FrameDecoder, encode_frame
from oodida.wire.messages import Role
from tests.wire.examples import FOLLOW_UP, frame, handshake


def header(n: int) -> bytes:
    return struct.pack(">I", n)


def test_partial_header_then_the_rest() -> None:
    d = FrameDecoder()
    d.receive_data(b"\x00\x00")
    assert d.next_frame() is None
    assert d.buffered == 2
    d.receive_data(b"\x00\x03ab")
    assert d.next_frame() is None
    d.receive_data(b"c")
    assert d.next_frame() == b"abc"
    assert d.next_frame() is None
    assert d.buffered == 0


def test_one_byte_at_a_time_and_several_frames_in_one_read() -> None:
    data = encode_frame(b"one") + encode_frame(b"two") + encode_frame(b"x" * 300)
    d = FrameDecoder()
    got = []
    for i in range(len(data)):
        d.receive_data(data[i : i + 1])
        while (f := d.next_frame()) is not None:
            got.append(f)
    assert got == [b"one", b"two", b"x" * 300]
    d = FrameDecoder()
    d.receive_data(data)
    assert [d.next_frame(), d.next_frame(), d.next_frame(), d.next_frame()] == [b"one", b"two", b"x" * 300, None]


def test_exactly_the_maximum_is_accepted() -> None:
    d = FrameDecoder(max_frame=16)
    d.receive_data(header(16) + b"y" * 16)
    assert d.next_frame() == b"y" * 16
    assert encode_frame(b"y" * 16, max_frame=16) == header(16) + b"y" * 16


@pytest.mark.parametrize("max_frame", [16, 1000, DEFAULT_MAX_FRAME])
def test_one_over_the_maximum_is_refused_as_soon_as_the_header_is_in(max_frame: int) -> None:
    d = FrameDecoder(max_frame=max_frame)
    d.receive_data(header(max_frame + 1)[:3])
    assert d.next_frame() is None
    with pytest.raises(RemoteProtocolError) as info:
        d.receive_data(header(max_frame + 1)[3:])  # the fourth header byte: no body needed
    assert "exceeds" in info.value.reason and str(max_frame + 1) in info.value.reason
    assert info.value.fatal
    assert d.buffered <= 4


def test_a_huge_announced_frame_is_not_buffered() -> None:
    d = FrameDecoder(max_frame=1024)
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        d.receive_data(header(0xFFFFFFFF) + b"z" * 100)
    assert d.buffered == 0


def test_the_limit_applies_to_a_frame_that_follows_a_good_one() -> None:
    d = FrameDecoder(max_frame=8)
    d.receive_data(encode_frame(b"ok", max_frame=8) + header(9))
    assert d.next_frame() == b"ok"  # the good frame before the bad header is not lost
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        d.next_frame()
    assert d.buffered == 0


def test_zero_length_frame_is_refused() -> None:
    d = FrameDecoder()
    with pytest.raises(RemoteProtocolError, match="empty") as info:
        d.receive_data(header(0))
    assert info.value.fatal


def test_zero_length_frame_after_a_good_one() -> None:
    d = FrameDecoder()
    d.receive_data(encode_frame(b"ok") + header(0) + encode_frame(b"never"))
    assert d.next_frame() == b"ok"
    with pytest.raises(RemoteProtocolError, match="empty"):
        d.next_frame()


@pytest.mark.parametrize("partial", [b"\x00", b"\x00\x00\x00", header(5), header(5) + b"abcd"])
def test_eof_inside_a_frame_is_an_error(partial: bytes) -> None:
    d = FrameDecoder()
    d.receive_data(partial)
    assert d.next_frame() is None
    d.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="closed inside a frame") as info:
        d.next_frame()
    assert info.value.fatal


def test_eof_at_a_frame_boundary_is_clean() -> None:
    d = FrameDecoder()
    d.receive_data(encode_frame(b"last"))
    d.receive_data(b"")
    assert d.eof
    assert d.next_frame() == b"last"  # what was complete is still delivered
    assert d.next_frame() is None
    assert d.next_frame() is None


def test_data_after_eof_is_our_bug() -> None:
    d = FrameDecoder()
    d.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        d.receive_data(b"\x00")


@pytest.mark.parametrize(
    "poison",
    [header(0), header(17), header(3) + b"ab" + b""],
    ids=["empty", "oversize", "eof-inside"],
)
def test_after_an_error_the_decoder_stays_dead(poison: bytes) -> None:
    d = FrameDecoder(max_frame=16)
    with pytest.raises(RemoteProtocolError) as first:
        d.receive_data(poison)
        d.receive_data(b"")
        d.next_frame()
    for _ in range(2):
        with pytest.raises(RemoteProtocolError) as again:
            d.receive_data(encode_frame(b"fine"))
        assert again.value is first.value
        with pytest.raises(RemoteProtocolError) as again:
            d.next_frame()
        assert again.value is first.value
        with pytest.raises(RemoteProtocolError):
            d.receive_data(b"")


def test_encode_frame_refuses_empty_and_oversize() -> None:
    with pytest.raises(LocalProtocolError, match="empty"):
        encode_frame(b"")
    with pytest.raises(LocalProtocolError, match="exceeds"):
        encode_frame(b"x" * 17, max_frame=16)
    assert isinstance(LocalProtocolError("x"), ValueError)


@pytest.mark.parametrize("bad", [0, -1, 2**32])
def test_decoder_max_frame_must_fit_the_header(bad: int) -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_frame=bad)
    FrameDecoder(max_frame=2**32 - 1)


# --- the same, through a Connection --------------------------------------------------------


def test_connection_refuses_an_oversize_frame_fatally() -> None:
    small = Connection(Side.SERVER, max_frame=64)
    with pytest.raises(RemoteProtocolError, match="exceeds") as info:
        small.receive_data(header(65))
    assert info.value.fatal
    assert small.state is State.CLOSED
    server, _ = handshake(Role.VEHICLE)
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        server.receive_data(header(DEFAULT_MAX_FRAME + 1))
    assert server.state is State.CLOSED


def test_connection_send_refuses_a_message_over_its_maximum() -> None:
    payload = encode_payload(FOLLOW_UP)
    server = Connection(Side.SERVER, max_frame=len(payload) - 1)
    with pytest.raises(LocalProtocolError, match="exceeds"):
        server.send(FOLLOW_UP)  # an Error is allowed now; its size is not
    with pytest.raises(LocalProtocolError, match="exceeds"):
        server.error(FOLLOW_UP.reason)


def test_connection_eof_at_boundary_is_closed_and_inside_a_frame_is_an_error() -> None:
    server, _ = handshake(Role.VEHICLE)
    server.receive_data(frame(FOLLOW_UP))
    server.receive_data(b"")
    assert server.next_event() == FOLLOW_UP
    assert server.next_event() is CLOSED
    assert server.state is State.CLOSED

    server, _ = handshake(Role.VEHICLE)
    server.receive_data(frame(FOLLOW_UP)[:-1])
    assert server.next_event() is NEED_DATA
    server.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="closed inside a frame") as info:
        server.next_event()
    assert info.value.fatal
    assert server.state is State.CLOSED
    with pytest.raises(RemoteProtocolError, match="closed inside a frame"):
        server.receive_data(b"more")  # dead, and says why
    assert server.next_event() is CLOSED


def test_connection_keeps_a_good_message_that_precedes_a_bad_header() -> None:
    server, _ = handshake(Role.VEHICLE)
    server.receive_data(frame(FOLLOW_UP) + header(0))
    assert server.next_event() == FOLLOW_UP
    with pytest.raises(RemoteProtocolError, match="empty") as info:
        server.next_event()
    assert info.value.fatal
    assert server.state is State.CLOSED
