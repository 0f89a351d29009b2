"""Hostile CBOR: values and raw byte sequences that have broken decoders, and the
near-valid messages built from them (a valid message with one field replaced, removed
or added). Shared by the hypothesis properties and the mutation fuzzer.

Near-valid inputs pass the framing and the CBOR decoder and reach the checks deep
inside (field types, ranges, `__post_init__`, the server's handlers), where random
bytes almost never get: a random byte string is refused at its first byte.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import cbor2

from oodida.wire.codec import _encode_default, to_plain
from oodida.wire.messages import MESSAGE_TYPES
from oodida.wire.values import NDArray

Tag = cbor2.CBORTag


@dataclass(frozen=True)
class Raw:
    """CBOR bytes spliced into an encoded value verbatim (possibly not CBOR at all)."""

    data: bytes


def _default(encoder: cbor2.CBOREncoder, value: Any) -> None:
    if isinstance(value, Raw):
        encoder.write(value.data)
    else:
        _encode_default(encoder, value)


def dumps(obj: Any) -> bytes:
    """CBOR of plain data with `Raw` splices and `NDArray` typed arrays."""
    return cbor2.dumps(obj, default=_default)


def nested(n: int, opener: bytes, closer: bytes = b"\x80") -> Raw:
    return Raw(opener * n + closer)


RAW: dict[str, Raw] = {
    "nest-100k-arrays": nested(100_000, b"\x81"),
    "nest-100k-maps": nested(100_000, b"\xa1\x61a"),
    "nest-100k-tags": nested(100_000, b"\xd8\x28"),
    "nest-100k-indefinite": nested(100_000, b"\x9f", b"\x80" + b"\xff" * 100_000),
    "nest-65-arrays": nested(65, b"\x81"),
    "indefinite-array": Raw(b"\x9f\x01\x02\xff"),
    "indefinite-map": Raw(b"\xbf\x61a\x01\xff"),
    "indefinite-text": Raw(b"\x7f\x61a\x61b\xff"),
    "indefinite-bytes": Raw(b"\x5f\x41a\x41b\xff"),
    "indefinite-text-bad-chunk": Raw(b"\x7f\x41a\xff"),
    "unterminated-indefinite": Raw(b"\x9f\x01"),
    "lone-break": Raw(b"\xff"),
    "reserved-info": Raw(b"\x1c"),
    "non-minimal-int": Raw(b"\x1b\x00\x00\x00\x00\x00\x00\x00\x01"),
    "half-nan": Raw(b"\xf9\x7e\x00"),
    "nan-with-payload": Raw(b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x01"),
    "single-inf": Raw(b"\xfa\x7f\x80\x00\x00"),
    "duplicate-keys": Raw(b"\xa2\x61a\x01\x61a\x02"),
    "int-key": Raw(b"\xa1\x01\x02"),
    "array-key": Raw(b"\xa1\x81\x01\x02"),
    "map-key": Raw(b"\xa1\xa0\x02"),
    "declared-2^64-array": Raw(b"\x9b" + b"\xff" * 8),
    "declared-2^32-map": Raw(b"\xbb\x00\x00\x00\x01\x00\x00\x00\x00"),
    "declared-4GiB-text": Raw(b"\x7b\x00\x00\x00\x01\x00\x00\x00\x00"),
    "declared-16MiB-bytes": Raw(b"\x5a\x01\x00\x00\x00"),
    "bad-utf8": Raw(b"\x62\xff\xfe"),
    "overlong-utf8": Raw(b"\x62\xc0\xaf"),
    "surrogate-utf8": Raw(b"\x63\xed\xa0\x80"),
    "simple-99": Raw(b"\xf8\x63"),
    "simple-reserved": Raw(b"\xf8\x10"),
    "undefined": Raw(b"\xf7"),
    "bignum-tag-huge": Raw(b"\xc2\x59\x10\x00" + b"\xff" * 4096),
    "negative-bignum": Raw(b"\xc3\x49" + b"\xff" * 9),
    "shared-ref": Raw(b"\xd8\x1c\x81\xd8\x1d\x00"),
    "string-ref": Raw(b"\xd9\x01\x00\x81\x63abc"),
    "self-describe": Raw(b"\xd9\xd9\xf7\x01"),
    "tag-2^64": Raw(b"\xdb" + b"\xff" * 8 + b"\x01"),
    "typed-array-ragged": Raw(b"\xd8\x55\x43\x00\x00\x00"),
    "ndarray-lying-shape": Raw(b"\xd8\x28\x82\x82\x1a\xff\xff\xff\xff\x1a\xff\xff\xff\xff\xd8\x55\x44\x00\x00\x00\x00"),
    "truncated": Raw(b"\xa3\x61a"),
}

VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, 2**53, 2**53 + 1, 2**63, 2**64, -(2**64) - 1, 2**1000, -(2**20000),
    0.0, -0.0, 0.5, math.nan, math.inf, -math.inf, 1e308, 5e-324, 1e12 + 1,
    "", "x" * 5000, "a\nb", "\x00", "é", "-v", "../etc/passwd", "0" * 64, "ab" * 32, "AB" * 32,
    *MESSAGE_TYPES,  # every tag: the wrong message's name where a name is expected
    b"", b"\xff" * 64, [], [None], [1] * 100, ["v1", "v1"], {}, {"a": 1}, {"": None},
    cbor2.undefined, cbor2.CBORSimpleValue(99),
    Tag(0, "2024-01-01T00:00:00Z"), Tag(1, 0), Tag(4, [-1, 5]), Tag(37, b"\x00" * 16), Tag(258, [1]),
    Tag(9999, 1), Tag(85, b"\x00" * 3), Tag(86, b"\x00" * 8), Tag(40, [[2], Tag(85, b"\x00" * 8)]),
    NDArray("<f8", (1,), b"\x00" * 8),
]


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a plain value: dict keys and list indexes, the root excluded."""
    out: list[tuple[Any, ...]] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.append((*prefix, key))
            out += paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out.append((*prefix, i))
            out += paths(value, (*prefix, i))
    return out


def replace(obj: Any, path: tuple[Any, ...], op: str, value: Any) -> Any:
    """A copy of `obj` with the item at `path` replaced by `value`, deleted, or with an
    extra key `value` beside it (in a dict)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        out = dict(obj)
        if rest:
            out[head] = replace(obj[head], rest, op, value)
        elif op == "delete":
            del out[head]
        elif op == "add":
            out[value if isinstance(value, (str, int, bytes)) else "extra"] = value
        else:
            out[head] = value
        return out
    out_list = list(obj)
    if rest:
        out_list[head] = replace(obj[head], rest, op, value)
    elif op == "delete":
        del out_list[head]
    else:
        out_list[head] = value
    return out_list


def near_valid(message: Any, rng: random.Random, *, extra: bytes | None = None) -> bytes:
    """The CBOR of `message` (a Message or plain map) with one field changed at random:
    replaced by a hostile value or raw CBOR, deleted, or joined by an unknown key."""
    plain = to_plain(message)
    where = paths(plain)
    path = rng.choice(where) if where else ()
    op = rng.choice(["replace", "replace", "replace", "raw", "delete", "add"])
    if op == "raw":
        value: Any = Raw(extra) if extra is not None and rng.random() < 0.3 else rng.choice(list(RAW.values()))
        op = "replace"
    else:
        value = rng.choice(VALUES)
    return dumps(replace(plain, path, op, value))
