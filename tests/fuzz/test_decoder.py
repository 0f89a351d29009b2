"""The sans-IO decoder against hostile input: whatever bytes arrive, in whatever
pieces, on either side and in every state, out come messages or `RemoteProtocolError`
with a reason, never another exception; buffering and decoding stay bounded."""

from __future__ import annotations

import itertools
import random
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oodida.wire.codec import MAX_ITEMS, decode_payload, encode_payload, to_plain
from oodida.wire.connection import (
    CLOSED,
    HANDSHAKE_MAX_FRAME,
    NEED_DATA,
    Connection,
    Side,
    State,
)
from oodida.wire.errors import RemoteProtocolError
from oodida.wire.framing import DEFAULT_MAX_FRAME, HEADER, encode_frame
from oodida.wire.messages import Result
from tests.fuzz.helpers import scale
from tests.fuzz.hostile import RAW, VALUES, Raw, dumps, near_valid, paths, replace
from tests.fuzz.report import Tally
from tests.wire.examples import EXAMPLES, FOLLOW_UP, Receiver, endpoints, frame

fuzz = settings(
    max_examples=int(300 * scale()),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

RECEIVERS = list(Receiver)


def round_trips(message: Any) -> bool:
    """An accepted message is a valid one: we can send it, and it reads back the same
    (compared as bytes, NaN being unequal to itself)."""
    data = encode_payload(message)
    return encode_payload(decode_payload(data)) == data


def cut(data: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted(p % (len(data) + 1) for p in points), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def feed(conn: Connection, chunks: list[bytes], tally: Tally) -> list[Any]:
    """Everything the connection makes of the chunks, then of the end of the stream.
    Only messages and `RemoteProtocolError`s with a reason may come out; a fatal one
    closes the connection and ends the stream."""
    events: list[Any] = []
    was_ready = conn.state is State.READY
    for chunk in [*chunks, b""]:
        before = conn._frames.buffered
        try:
            conn.receive_data(chunk)
        except RemoteProtocolError as exc:
            assert exc.fatal and exc.reason and conn.state is State.CLOSED
            events.append(exc)
            return events
        # bounded buffering: never more than one frame (and its header) plus one read
        assert conn._frames.buffered <= before + len(chunk)
        assert conn._frames.buffered <= conn._frames.max_frame + HEADER.size + len(chunk)
        for _ in range(10_000):
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                assert exc.reason
                events.append(exc)
                tally.add("refused")
                if exc.fatal:
                    assert conn.state is State.CLOSED
                    return events
                assert was_ready and conn.state is State.READY  # not fatal only once ready
                continue
            if event is NEED_DATA or event is CLOSED:
                break
            tally.add("accepted")
            events.append(event)
    return events


@fuzz
@given(
    which=st.integers(0, len(EXAMPLES) - 1),
    elsewhere=st.sampled_from([None, None, *RECEIVERS]),
    rng=st.randoms(use_true_random=False),
    extra=st.binary(max_size=64),
    points=st.lists(st.integers(min_value=0), max_size=6),
)
def test_near_valid_messages_in_any_pieces_to_any_receiver(
    tally: Tally, which: int, elsewhere: Receiver | None, rng: random.Random, extra: bytes, points: list[int]
) -> None:
    """A valid message with one field made hostile, sent where it belongs (or anywhere,
    and then it is also a message out of place), followed by a valid one."""
    example = EXAMPLES[which]
    conn, _ = endpoints(elsewhere or example.receiver)
    payload = near_valid(example.message, rng, extra=extra)
    tally.add("inputs")
    ready = conn.state is State.READY
    events = feed(conn, cut(encode_frame(payload) + frame(FOLLOW_UP), points), tally)
    if ready:  # a bad frame costs that frame only; the next one still gets through
        assert events[-1] == FOLLOW_UP
        assert not any(isinstance(e, RemoteProtocolError) and e.fatal for e in events)
    for event in events:
        if not isinstance(event, RemoteProtocolError):  # accepted: it is a valid message
            assert round_trips(event)


@fuzz
@given(
    receiver=st.sampled_from(RECEIVERS),
    data=st.binary(max_size=400),
    points=st.lists(st.integers(min_value=0), max_size=8),
)
def test_random_bytes_in_any_pieces_to_any_receiver(
    tally: Tally, receiver: Receiver, data: bytes, points: list[int]
) -> None:
    conn, _ = endpoints(receiver)
    tally.add("inputs")
    feed(conn, cut(data, points), tally)


def test_every_hostile_value_in_every_field_of_every_message(tally: Tally) -> None:
    """Exhaustive, not sampled: each field of each example message, replaced by each
    hostile value and each hostile raw CBOR item, decodes or is refused with a reason."""
    light = [*VALUES, *(r for r in RAW.values() if len(r.data) < 1024)]
    heavy = [r for r in RAW.values() if len(r.data) >= 1024]  # 100-200 KB: top-level fields only
    seen: set[int] = set()
    # one example of each message type in CI; every example in a campaign
    examples = EXAMPLES if scale() > 1 else list({type(e.message): e for e in reversed(EXAMPLES)}.values())
    for example in examples:
        plain = to_plain(example.message)
        for path in paths(plain):
            for value in light + (heavy if len(path) == 1 else []):
                payload = dumps(replace(plain, path, "replace", value))
                if hash(payload) in seen:
                    continue
                seen.add(hash(payload))
                tally.add("inputs")
                try:
                    message = decode_payload(payload)
                except RemoteProtocolError as exc:
                    assert exc.reason and not exc.fatal
                    tally.add("refused")
                else:
                    tally.add("accepted")
                    assert round_trips(message)
    assert tally.inputs > 10_000  # (what it tries, for the report, is its count)


# --- bounded: lengths, items, depth ------------------------------------------------------------


def peak_while(fn: Any) -> tuple[int, Any]:
    """Peak bytes Python allocated while `fn` ran (cbor2 allocates through Python too)."""
    tracemalloc.start()
    try:
        try:
            result: Any = fn()
        except RemoteProtocolError as exc:
            result = exc
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_a_huge_announced_frame_is_refused_on_its_header_before_any_body(tally: Tally) -> None:
    for conn, limit in [
        (Connection(Side.SERVER), HANDSHAKE_MAX_FRAME),  # nobody authenticated yet: small frames
        (endpoints(Receiver.SERVER_OF_VEHICLE)[0], DEFAULT_MAX_FRAME),
        (endpoints(Receiver.VEHICLE)[0], DEFAULT_MAX_FRAME),
    ]:
        tally.add("inputs")
        ok = conn._frames.max_frame
        assert ok == limit
        with pytest.raises(RemoteProtocolError, match=f"exceeds the maximum of {limit}") as info:
            conn.receive_data(HEADER.pack(limit + 1))
        assert info.value.fatal and conn.state is State.CLOSED and conn._frames.buffered == 0


def test_the_handshake_limit_is_lifted_once_the_peer_is_authenticated() -> None:
    server, client = endpoints(Receiver.SERVER_OF_VEHICLE)
    big = Result(assignment=1, iteration=1, vehicle="v1", ok=True, code_hash="h", value=b"x" * (1 << 20))
    server.receive_data(client.send(big))
    assert server.next_event() == big


@pytest.mark.parametrize("name", [n for n in RAW if n.startswith(("declared", "nest"))])
def test_declared_sizes_and_nesting_cost_no_memory(tally: Tally, name: str) -> None:
    """A few bytes that announce 2^64 items or nest 100,000 levels: refused, with
    less than 4 MiB allocated on the way (beyond the payload itself)."""
    payload = dumps({**to_plain(EXAMPLES[7].message), "value": RAW[name]})
    tally.add("inputs")
    peak, result = peak_while(lambda: decode_payload(payload))
    assert isinstance(result, RemoteProtocolError) and result.reason, result
    assert peak < 4 * 1024 * 1024 + 2 * len(payload), f"{name}: {peak} bytes for {len(payload)}"


@pytest.mark.parametrize("item", [b"\x80", b"\xa0"], ids=["empty-arrays", "empty-maps"])
def test_a_frame_of_millions_of_tiny_items_is_refused_before_decoding(tally: Tally, item: bytes) -> None:
    """Millions of one-byte items (empty arrays cost cbor2 56 bytes each: a 16 MiB frame
    of them took 1.2 GiB and 8 s) are refused by counting, with nothing decoded."""
    count = 2 * MAX_ITEMS  # (a full 16 MiB frame is refused the same way, after the same count)
    payload = dumps({**to_plain(EXAMPLES[7].message), "value": Raw(b"\x9f" + item * count + b"\xff")})
    tally.add("inputs")
    peak, result = peak_while(lambda: decode_payload(payload))
    assert isinstance(result, RemoteProtocolError), result
    assert f"more than {MAX_ITEMS}" in result.reason and not result.fatal
    assert peak < 4 * 1024 * 1024, peak


def test_a_message_just_under_the_item_budget_still_decodes() -> None:
    """The budget refuses no message our own limits allow: a result value of a
    million items (the most `check_value` lets through) is fine."""
    value = [0] * 999_990
    message = Result(assignment=1, iteration=1, vehicle="v1", ok=True, code_hash="h", value=value)
    assert decode_payload(encode_payload(message)) == message


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"type": "hello", "version": 10**5000, "role": "vehicle", "identity": "v1", "nonce": b"\x07" * 24},
         "$.version"),
        ({"type": "hello", "version": 2**64, "role": "vehicle", "identity": "v1", "nonce": b"\x07" * 24}, "$.version"),
        ({"type": "welcome", "version": -(10**5000), "session": "s"}, "$.version"),
        ({"type": "vehicle_status", "frames": 0, "unknown_frames": 0, "malformed_frames": 0, "signal_time": None,
          "sources": [], "signals": [], "pid": 10**5000}, "$.pid"),
    ],
    ids=["hello-5000-digit-version", "hello-2^64-version", "welcome-negative-bignum", "status-bignum-pid"],
)
def test_integers_a_peer_sends_are_bounded(message: dict[str, Any], field: str) -> None:
    """Found by the session fuzzer: a hello whose version had 5,000 digits reached the
    server's refusal, which could not format it (Python refuses int-to-str past 4,300
    digits): a traceback and no answer. Such numbers are now refused by the decoder."""
    with pytest.raises(RemoteProtocolError) as info:
        decode_payload(dumps(message))
    assert field in info.value.reason and not info.value.fatal
