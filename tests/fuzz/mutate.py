"""Mutations of recorded frames, byte-level and CBOR-aware.

Each mutator takes the recorded payloads of one session (client to server, in order)
and the payloads of every session (to splice from), and returns the bytes to send:
frames with a few things wrong, the rest intact so the server's state machine gets
deep before meeting the wrong bit.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import Any

import cbor2

from oodida.wire.framing import encode_frame
from oodida.wire.messages import MESSAGE_TYPES
from tests.fuzz.hostile import RAW, VALUES, Raw, dumps, paths, replace

HEADER = struct.Struct(">I")

Mutator = Callable[[random.Random, list[bytes], list[bytes]], bytes]


def frames(payloads: list[bytes]) -> bytes:
    return b"".join(HEADER.pack(len(p)) + p for p in payloads)


def _pick(rng: random.Random, payloads: list[bytes]) -> int:
    return rng.randrange(len(payloads))


def bit_flips(rng: random.Random, payloads: list[bytes], pool: list[bytes]) -> bytes:
    out = list(payloads)
    i = _pick(rng, out)
    body = bytearray(out[i])
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(len(body))
        body[pos] ^= 1 << rng.randrange(8)
    out[i] = bytes(body)
    return frames(out)


def byte_edits(rng: random.Random, payloads: list[bytes], pool: list[bytes]) -> bytes:
    """Insert, delete, overwrite or duplicate a run of bytes inside one payload (the
    length prefix is fixed up, so the damage reaches the CBOR decoder)."""
    out = list(payloads)
    i = _pick(rng, out)
    body = bytearray(out[i])
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(len(body) + 1)
        n = rng.randint(1, 16)
        op = rng.randrange(4)
        if op == 0:
            body[pos:pos] = rng.randbytes(n)
        elif op == 1:
            del body[pos : pos + n]
        elif op == 2:
            body[pos : pos + n] = rng.randbytes(n)
        else:
            body[pos:pos] = body[pos : pos + n] * rng.randint(1, 50)
    out[i] = bytes(body) or b"\x00"
    return frames(out)


def splice(rng: random.Random, payloads: list[bytes], pool: list[bytes]) -> bytes:
    """A frame made of the head of one recorded payload and the tail of another (from
    any session), or another session's frame where this one's was."""
    out = list(payloads)
    i = _pick(rng, out)
    other = rng.choice(pool)
    if rng.random() < 0.5:
        out[i] = out[i][: rng.randrange(len(out[i]) + 1)] + other[rng.randrange(len(other) + 1) :] or b"\x00"
    else:
        out[i] = other
    return frames(out)


def length_prefix(rng: random.Random, payloads: list[bytes], pool: list[bytes]) -> bytes:
    """The body intact, its length prefix wrong: shorter, longer, zero, huge."""
    i = _pick(rng, payloads)
    n = len(payloads[i])
    wrong = rng.choice([0, 1, n - 1, n + 1, n * 2, 2**16, 2**24, 2**31, 2**32 - 1, rng.randrange(2**32)])
    data = frames(payloads[:i]) + HEADER.pack(max(0, min(wrong, 2**32 - 1))) + payloads[i]
    return data + frames(payloads[i + 1 :])


def truncate(rng: random.Random, payloads: list[bytes], pool: list[bytes]) -> bytes:
    data = frames(payloads)
    return data[: rng.randrange(len(data))]


def cbor_field(rng: random.Random, payloads: list[bytes], pool: list[bytes]) -> bytes:
    """CBOR-aware: one field of one message replaced by a hostile value or raw CBOR,
    deleted, or joined by an unknown field; or the message's type swapped."""
    out = list(payloads)
    i = _pick(rng, out)
    try:
        obj: Any = cbor2.loads(out[i])
    except Exception:  # noqa: BLE001 -- cbor2 raises many types on damaged input
        return bit_flips(rng, payloads, pool)
    if isinstance(obj, dict) and rng.random() < 0.2:
        obj = {**obj, "type": rng.choice(list(MESSAGE_TYPES))}
    else:
        where = paths(obj) or [("type",)]
        path = rng.choice(where)
        op = rng.choice(["replace", "replace", "raw", "delete", "add"])
        value: Any = rng.choice(list(RAW.values())) if op == "raw" else rng.choice(VALUES)
        obj = replace(obj, path, "replace" if op == "raw" else op, value)
    out[i] = dumps(obj)
    return frames(out)


def repeat(rng: random.Random, payloads: list[bytes], pool: list[bytes]) -> bytes:
    """One recorded frame many times over: duplicates, and requests in bulk."""
    i = _pick(rng, payloads)
    return frames(payloads[:i] + [payloads[i]] * rng.randint(2, 200) + payloads[i + 1 :])


def garbage(rng: random.Random, payloads: list[bytes], pool: list[bytes]) -> bytes:
    """A random frame (valid prefix) between recorded ones."""
    out = list(payloads)
    out.insert(rng.randrange(len(out) + 1), rng.randbytes(rng.randint(1, 256)))
    return frames(out)


MUTATORS: dict[str, Mutator] = {
    "bit_flips": bit_flips,
    "byte_edits": byte_edits,
    "splice": splice,
    "length_prefix": length_prefix,
    "truncate": truncate,
    "cbor_field": cbor_field,
    "cbor_field_2": cbor_field,  # twice the weight: it gets deepest
    "repeat": repeat,
    "garbage": garbage,
}


def mutate(rng: random.Random, payloads: list[bytes], pool: list[bytes]) -> tuple[str, bytes]:
    name = rng.choice(list(MUTATORS))
    return name.removesuffix("_2"), MUTATORS[name](rng, payloads, pool)


__all__ = ["MUTATORS", "Raw", "encode_frame", "frames", "mutate"]
