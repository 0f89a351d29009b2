"""Hostile and broken input: every case is a `RemoteProtocolError` that says why, never
another exception. Each is run against the decoder alone, a READY connection (the
error is not fatal and the next message decodes) and a server before the handshake
(the error is fatal)."""

from __future__ import annotations

import math
import struct
from typing import Any

import cbor2
import pytest

from oodida.wire.codec import decode_payload, encode_payload
from oodida.wire.connection import CLOSED, NEED_DATA, Connection, Side, State
from oodida.wire.errors import RemoteProtocolError
from oodida.wire.framing import encode_frame
from oodida.wire.messages import Result, Role
from tests.wire.examples import (
    FOLLOW_UP,
    RESULT_MAP,
    frame,
    handshake,
    result_with_raw_value,
    same,
    text,
)

Tag = cbor2.CBORTag

RESULT = RESULT_MAP
SUBMIT: dict[str, Any] = {"type": "submit", "id": 1, "spec": {"signals": ["A"], "window": {"amount": 10.0}}}
TASK: dict[str, Any] = {
    "type": "task",
    "assignment": 1,
    "iteration": 1,
    "signals": ["A"],
    "window": {"amount": 1.0},
    "methods": ["mean"],
    "params": {},
    "deadline": 10.0,
}
LOAD: dict[str, Any] = {
    "type": "load_module", "assignment": 1, "code_hash": "ab" * 32, "module": {"name": "m.py", "source": ""},
}
ACK: dict[str, Any] = {"type": "module_ack", "assignment": 1, "code_hash": "ab" * 32, "ok": True}
DEPLOY: dict[str, Any] = {
    "type": "deploy", "id": 1, "assignment": 1, "side": "on_board", "module": {"name": "m.py", "source": ""},
}
HELLO: dict[str, Any] = {"type": "hello", "version": 1, "role": "vehicle", "identity": "v1", "nonce": b"n" * 24}


def dumps(obj: Any) -> bytes:
    return cbor2.dumps(obj)


def result(**fields: Any) -> bytes:
    return dumps({**RESULT, **fields})


def spec(**fields: Any) -> bytes:
    return dumps({**SUBMIT, "spec": {**SUBMIT["spec"], **fields}})


def deep(n: int, opener: bytes = b"\x81") -> bytes:
    return opener * n + b"\x80"


def f4(n: int) -> bytes:
    return b"\x00" * (4 * n)


# (id, payload, key words that the reason must contain, lower case)
CASES: list[tuple[str, bytes, list[str]]] = [
    # not CBOR at all, or not all of it
    ("break-code", b"\xff\xff", ["undecodable"]),
    ("reserved-additional-info", b"\x1c", ["undecodable"]),
    ("truncated", result()[:-3], ["undecodable"]),
    ("truncated-map-header", b"\xa7", ["undecodable"]),
    ("truncated-huge-string", b"\x7b" + b"\x7f" * 8, ["undecodable"]),
    ("truncated-huge-array", b"\x9b" + b"\x7f" * 8, ["undecodable"]),
    ("bad-utf8", b"\xa1" + text("type") + b"\x62\xff\xfe", ["undecodable", "utf-8"]),
    ("trailing-bytes", result() + b"\x00", ["trailing"]),
    ("two-maps", result() + result(), ["trailing"]),
    # CBOR, but not a message
    ("list", dumps([RESULT]), ["cbor map", "list"]),
    ("int", dumps(5), ["cbor map", "int"]),
    ("string", dumps("result"), ["cbor map", "str"]),
    ("null", dumps(None), ["cbor map"]),
    ("unknown-type", dumps({**RESULT, "type": "nope"}), ["'nope'", "$.type"]),
    ("missing-type", dumps({k: v for k, v in RESULT.items() if k != "type"}), ["missing", "`type`"]),
    ("empty-map", dumps({}), ["missing", "`type`"]),
    ("type-not-a-string", dumps({"type": 5}), ["$.type"]),
    ("type-as-bytes", dumps({"type": b"result"}), ["$.type"]),
    # fields
    (
        "missing-required-field",
        dumps({k: v for k, v in RESULT.items() if k != "code_hash"}),
        ["missing required field", "code_hash"],
    ),
    ("missing-nested-field", dumps({**SUBMIT, "spec": {"signals": ["A"]}}), ["missing required field", "window"]),
    ("wrong-type-str", result(vehicle=5), ["expected `str`", "$.vehicle"]),
    ("wrong-type-int", result(assignment="1"), ["expected `int`", "$.assignment"]),
    ("wrong-type-nested", spec(window="30s"), ["$.spec.window"]),
    ("wrong-type-list", spec(signals="A"), ["expected `array`", "$.spec.signals"]),
    ("float-for-int", result(iteration=1.0), ["expected `int`", "got `float`"]),
    ("bool-for-int", result(assignment=True), ["expected `int`", "got `bool`"]),
    ("bool-for-float", result(elapsed=True), ["got `bool`", "$.elapsed"]),
    ("int-for-bool", result(ok=1), ["expected `bool`", "$.ok"]),
    ("array-for-str", result(code_hash=Tag(85, b"")), ["expected `str`", "$.code_hash"]),
    ("undefined-for-optional", result(ok=False, error=cbor2.undefined), ["$.error"]),
    ("bad-enum", dumps({**HELLO, "role": "server"}), ["$.role"]),
    ("bad-literal", spec(off_board="cloud"), ["$.spec.off_board"]),
    # ranges
    ("negative-iteration", result(iteration=-1), [">= 1", "$.iteration"]),
    ("zero-iteration", result(iteration=0), [">= 1", "$.iteration"]),
    ("huge-assignment", result(assignment=2**53 + 1), ["<=", "$.assignment"]),
    ("bignum-assignment", result(assignment=2**80), ["$.assignment"]),
    ("negative-count", result(samples={"A": -1}), [">= 0", "$.samples"]),
    ("nan-seconds", result(elapsed=math.nan), ["$.elapsed"]),
    ("inf-timestamp", result(t_start=math.inf), ["$.t_start"]),
    ("bignum-timestamp", result(t_end=2**2000), ["$.t_end"]),
    ("zero-deadline", dumps({**TASK, "deadline": 0.0}), ["$.deadline"]),
    ("quorum-zero", spec(quorum=0), ["$.spec.quorum"]),
    ("quorum-fraction-over-one", spec(quorum=1.5), ["$.spec.quorum"]),
    ("window-negative", spec(window={"amount": -1.0}), ["$.spec.window.amount"]),
    # sizes
    ("too-long-error", result(ok=False, error="x" * 4097), ["length", "$.error"]),
    ("too-long-nonce", dumps({**HELLO, "nonce": b"n" * 65}), ["length", "$.nonce"]),
    ("too-short-nonce", dumps({**HELLO, "nonce": b"n" * 15}), ["length", "$.nonce"]),
    ("nonce-as-text", dumps({**HELLO, "nonce": "not base64 at all!"}), ["$.nonce"]),
    ("hello-with-a-token", dumps({**HELLO, "token": "s3cret"}), ["token"]),  # no secret ever crosses the wire
    ("short-proof", dumps({"type": "proof", "proof": b"p" * 31}), ["length", "$.proof"]),
    ("challenge-few-iterations", dumps({"type": "challenge", "nonce": b"n" * 48, "salt": b"s" * 16, "iterations": 1}),
     ["$.iterations"]),
    ("too-long-identity", result(vehicle="v" * 65), ["regex", "$.vehicle"]),
    ("too-many-signals", spec(signals=[f"s{i}" for i in range(65)]), ["length", "$.spec.signals"]),
    ("no-signals", spec(signals=[]), ["length", "$.spec.signals"]),
    ("too-long-params-key", dumps({**TASK, "params": {"k" * 65: 1}}), ["length", "$.params"]),
    ("too-many-params-items", dumps({**TASK, "params": {"x": [0] * 100_001}}), ["more than 100000 items"]),
    # patterns
    ("identity-with-space", result(vehicle="bad id"), ["regex", "$.vehicle"]),
    ("identity-empty", result(vehicle=""), ["regex", "$.vehicle"]),
    ("identity-trailing-newline", result(vehicle="v1\n"), ["regex", "$.vehicle"]),
    ("identity-leading-dash", result(vehicle="-v1"), ["regex", "$.vehicle"]),
    ("identity-unicode", result(vehicle="véhicule"), ["regex", "$.vehicle"]),
    ("hello-identity-slash", dumps({**HELLO, "identity": "../etc"}), ["regex", "$.identity"]),
    ("signal-name-newline", result(samples={"SPEED\n": 1}), ["regex", "$.samples"]),
    ("method-uppercase", dumps({**TASK, "methods": ["Mean"]}), ["regex", "$.methods"]),
    # unknown fields
    ("unknown-field", result(extra=1), ["unknown field", "extra"]),
    ("unknown-nested-field", spec(window={"amount": 1.0, "junk": 2}), ["unknown field", "junk"]),
    # map keys
    ("duplicate-keys", b"\xa2" + text("type") + text("error") + text("type") + text("error"), ["duplicate"]),
    (
        "duplicate-keys-in-value",
        result_with_raw_value(b"\xa2" + text("a") + b"\x01" + text("a") + b"\x02"),
        ["duplicate"],
    ),
    ("int-key-top-level", b"\xa2" + text("type") + text("error") + b"\x01\x02", ["map key"]),
    ("int-key-in-value", result_with_raw_value(b"\xa1\x01\x02"), ["map key"]),
    ("array-key-in-value", result_with_raw_value(b"\xa1\x81\x01\x02"), ["map key"]),
    ("bytes-key-in-value", result(value={b"k": 1}), ["dict key", "only str keys"]),
    ("bytes-key-in-params", dumps({**TASK, "params": {b"k": 1}}), ["$.params"]),
    # nesting
    ("nested-40-levels", result_with_raw_value(deep(40)), ["nested deeper than 32"]),
    ("nested-beyond-decoder-limit", result_with_raw_value(deep(100)), ["undecodable", "depth"]),
    ("nested-maps-beyond-limit", result_with_raw_value(deep(100, b"\xa1" + text("a"))), ["undecodable", "depth"]),
    ("nested-100k-levels", result_with_raw_value(deep(100_000)), ["undecodable", "depth"]),
    ("nested-tags-beyond-limit", result_with_raw_value(b"\xd8\x28" * 100 + b"\x80"), ["undecodable"]),
    ("params-nested-9-levels", dumps({**TASK, "params": {"x": [[[[[[[[[1]]]]]]]]]}}), ["nested deeper than 8"]),
    # typed arrays (RFC 8746)
    ("typed-array-ragged", result(value=Tag(85, b"\x00" * 7)), ["multiple of 4"]),
    ("typed-array-f8-ragged", result(value=Tag(86, b"\x00" * 9)), ["multiple of 8"]),
    ("typed-array-not-bytes", result(value=Tag(85, [1.0, 2.0])), ["byte string"]),
    ("ndarray-shape-mismatch", result(value=Tag(40, [[2, 3], Tag(85, f4(5))])), ["shape (2, 3)", "needs 24 bytes"]),
    ("ndarray-0d-mismatch", result(value=Tag(40, [[], Tag(85, f4(2))])), ["needs 4 bytes"]),
    ("ndarray-negative-dim", result(value=Tag(40, [[-2, -2], Tag(85, f4(4))])), ["non-negative"]),
    ("ndarray-bool-dim", result(value=Tag(40, [[True, 2], Tag(85, f4(2))])), ["shape"]),
    ("ndarray-float-dim", result(value=Tag(40, [[2.0], Tag(85, f4(2))])), ["shape"]),
    ("ndarray-9-dims", result(value=Tag(40, [[1] * 9, Tag(85, f4(1))])), ["shape", "8"]),
    ("ndarray-shape-not-list", result(value=Tag(40, [2, Tag(85, f4(2))])), ["shape"]),
    ("ndarray-not-a-pair", result(value=Tag(40, [[2]])), ["tag 40"]),
    ("ndarray-plain-list", result(value=Tag(40, [[2], [1.0, 2.0]])), ["tag 40"]),
    ("ndarray-huge-dims", result(value=Tag(40, [[2**40, 2**40], Tag(85, f4(1))])), ["needs"]),
    # tags that are not ours
    ("unknown-tag", result(value=Tag(9999, 1)), ["tag 9999", "not allowed"]),
    ("huge-tag-number", result(value=Tag(2**40, 1)), ["not allowed"]),
    ("big-endian-typed-array", result(value=Tag(65, b"\x00\x01")), ["tag 65", "not allowed"]),
    ("embedded-cbor", result(value=Tag(24, dumps(1))), ["tag 24", "not allowed"]),
    ("datetime-string", result(value=Tag(0, "2024-01-01T00:00:00Z")), ["datetime", "not allowed"]),
    ("datetime-bad-string", result(value=Tag(0, "yesterday")), ["undecodable"]),
    ("datetime-epoch", result(value=Tag(1, 1_700_000_000)), ["datetime", "not allowed"]),
    ("datetime-out-of-range", result(value=Tag(1, 10**30)), ["undecodable"]),
    ("decimal", result(value=Tag(4, [-2, 314])), ["decimal", "not allowed"]),
    ("bigfloat", result(value=Tag(5, [-1, 3])), ["decimal", "not allowed"]),
    ("rational", result(value=Tag(30, [1, 3])), ["fraction", "not allowed"]),
    ("uuid", result(value=Tag(37, b"\x00" * 16)), ["uuid", "not allowed"]),
    ("regex", result(value=Tag(35, "a+")), ["pattern", "not allowed"]),
    ("set", result(value=Tag(258, ["a", "b"])), ["set", "not allowed"]),
    ("ip-address", result(value=Tag(260, b"\x7f\x00\x00\x01")), ["not allowed"]),
    ("date", result(value=Tag(1004, "2024-01-01")), ["date", "not allowed"]),
    ("mime", result(value=Tag(36, "Content-Type: text/plain\n\nhi")), ["not allowed"]),
    ("datetime-in-task-state", dumps({**TASK, "state": Tag(1, 0)}), ["datetime", "not allowed"]),
    ("decimal-in-params", spec(params={"x": Tag(4, [-1, 5])}), ["decimal", "not allowed"]),
    ("decimal-for-str-field", result(code_hash=Tag(4, [-1, 5])), ["expected `str`", "$.code_hash"]),
    (
        "uuid-for-str-field",
        dumps({"type": "welcome", "version": 1, "session": Tag(37, b"\x00" * 16)}),
        ["expected `str`", "$.session"],
    ),
    ("undefined-value", result(value=cbor2.undefined), ["undefinedtype", "not allowed"]),
    ("simple-value", result(value=cbor2.CBORSimpleValue(99)), ["cborsimplevalue", "not allowed"]),
    # a few bytes that would stand for a huge value
    ("value-sharing", cbor2.dumps({**RESULT, "value": [[1], [1]]}, value_sharing=True) + b"", ["sharing"]),
    ("shared-ref", result(value=Tag(28, [Tag(29, 0)])), ["sharing"]),
    (
        "string-reference",
        cbor2.dumps({**RESULT, "value": ["abc" * 10] * 3}, string_referencing=True),
        ["string references"],
    ),
    ("string-ref-namespace", result(value=Tag(256, "a")), ["string references"]),
    # the rules messages add themselves
    ("ok-with-error", result(ok=True, error="but"), ["cannot be ok"]),
    ("failed-without-error", result(ok=False), ["must say why"]),
    ("failed-with-empty-error", result(ok=False, error=""), ["must say why"]),
    ("duplicate-vehicles", spec(vehicles=["v1", "v1"]), ["twice"]),
    ("duplicate-signals", spec(signals=["A", "A"]), ["twice"]),
    ("fractional-samples", spec(window={"amount": 2.5, "unit": "samples"}), ["whole number"]),
    ("empty-vehicle-list", spec(vehicles=[]), ["$.spec.vehicles"]),
    # active-code replacement
    ("task-without-methods-or-module", dumps({**TASK, "methods": []}), ["built-in methods or a module"]),
    ("load-module-hash-not-sha256", dumps({**LOAD, "code_hash": "builtin:0.1"}), ["$.code_hash"]),
    ("load-module-upper-case-hash", dumps({**LOAD, "code_hash": "AB" * 32}), ["$.code_hash"]),
    ("load-module-huge-source", dumps({**LOAD, "module": {"name": "m.py", "source": "x" * (256 * 1024 + 1)}}),
     ["$.module.source"]),
    ("load-module-path-as-name", dumps({**LOAD, "module": {"name": "../m.py", "source": ""}}), ["$.module.name"]),
    ("module-ack-ok-with-error", dumps({**ACK, "error": "but"}), ["not both"]),
    ("module-ack-refused-without-why", dumps({**ACK, "ok": False}), ["not both"]),
    ("deploy-module-and-hash", dumps({**DEPLOY, "code_hash": "abcd"}), ["one of the two"]),
    ("deploy-neither", dumps({k: v for k, v in DEPLOY.items() if k != "module"}), ["one of the two"]),
    ("deploy-short-hash-prefix", dumps({**DEPLOY, "module": None, "code_hash": "abc"}), ["$.code_hash"]),
    ("deploy-wrong-side", dumps({**DEPLOY, "side": "both"}), ["$.side"]),
    ("deploy-vehicle-twice", dumps({**DEPLOY, "vehicles": ["v1", "v1"]}), ["twice"]),
]

# a value that takes the sharing tags literally: it must not decode at all
assert b"\xd8\x1c" in CASES[[c[0] for c in CASES].index("value-sharing")][1]


@pytest.mark.parametrize(("payload", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decoder_refuses_with_a_reason(payload: bytes, words: list[str]) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_payload(payload)
    reason = info.value.reason.lower()
    for word in words:
        assert word.lower() in reason, f"{word!r} not in {info.value.reason!r}"
    assert not info.value.fatal  # the frame boundary is intact
    assert str(info.value) == info.value.reason
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, RemoteProtocolError)


@pytest.mark.parametrize("payload", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_message_when_ready_is_not_fatal_and_the_next_one_decodes(payload: bytes) -> None:
    server, _ = handshake(Role.VEHICLE)
    good = Result(assignment=2, iteration=3, vehicle="peer-1", ok=True, code_hash="h", value=1.5)
    server.receive_data(encode_frame(payload) + frame(good))
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert not info.value.fatal
    assert server.state is State.READY
    assert server.next_event() == good
    assert server.next_event() is NEED_DATA


@pytest.mark.parametrize("payload", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_message_before_the_handshake_is_fatal(payload: bytes) -> None:
    server = Connection(Side.SERVER)
    with pytest.raises(RemoteProtocolError) as info:
        # a payload over the handshake's frame limit is refused as its header arrives
        server.receive_data(encode_frame(payload) + frame(FOLLOW_UP))
        server.next_event()
    assert info.value.fatal
    assert "during handshake" in info.value.reason
    assert server.state is State.CLOSED
    # dead: what follows is never delivered
    if "exceeds the maximum" not in info.value.reason:  # (refused at the framing: nothing kept)
        with pytest.raises(RemoteProtocolError):
            server.next_event()
    assert server.next_event() is CLOSED


# --- what is allowed, and must survive the trip --------------------------------------------


def nest(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


ALLOWED_VALUES = [
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="-inf"),
    pytest.param(-0.0, id="-0.0"),
    pytest.param(5e-324, id="subnormal"),
    pytest.param(1.7976931348623157e308, id="max-float"),
    pytest.param([math.nan, {"x": math.inf, "y": [-math.inf]}], id="nested-non-finite"),
    pytest.param(2**100, id="bignum"),
    pytest.param(-(2**64) - 1, id="negative-bignum"),
    pytest.param(nest(32), id="nested-32"),
    pytest.param({"": "", "ü": "😀", "a\x00b": b"\x00"}, id="odd-strings"),
    pytest.param([True, False, None, 0, -1, 1.5, "s", b"b", [], {}], id="every-plain-type"),
]


@pytest.mark.parametrize("value", ALLOWED_VALUES)
def test_allowed_values_round_trip(value: Any) -> None:
    message = Result(assignment=1, iteration=1, vehicle="v", ok=True, code_hash="h", value=value)
    back = decode_payload(encode_payload(message))
    assert isinstance(back, Result)
    assert same(back.value, value)


def test_nan_and_inf_inside_a_float_array_are_kept_bit_for_bit() -> None:
    data = struct.pack("<3d", math.nan, math.inf, -math.inf)
    back = decode_payload(result(value=Tag(86, data)))
    assert isinstance(back, Result)
    assert back.value.data == data


def test_a_position_off_the_globe_is_refused() -> None:
    import msgspec

    from oodida.wire.messages import Position

    assert msgspec.convert({"latitude": 57.7, "longitude": 11.9, "time": 1.0}, Position).latitude == 57.7
    for bad in ({"latitude": 91.0, "longitude": 0.0, "time": 1.0}, {"latitude": 0.0, "longitude": -180.5, "time": 1.0},
                {"latitude": float("nan"), "longitude": 0.0, "time": 1.0}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, Position)
