"""Messages between the supervisor and its worker: length-prefixed CBOR over pipes.

Arrays travel as raw bytes with dtype and shape (RFC 8746 typed arrays, the same
encoding as the wire protocol), never as lists of floats. Blocking, plain os.read and
os.write: the worker must not need any syscall beyond read and write on its pipes.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

from wire.codec import decode_value, encode_value
from wire.values import NDArray

HEADER = struct.Struct(">I")
MAX_MESSAGE = 256 * 2**20


class PipeClosed(EOFError):
    pass


def to_transport(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        if arr.dtype.kind == "b":
            arr = arr.astype(np.uint8)
        elif arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        return NDArray(arr.dtype.str, tuple(int(n) for n in arr.shape), arr.tobytes())
    if isinstance(value, dict):
        return {k: to_transport(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_transport(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def from_transport(value: Any) -> Any:
    if isinstance(value, NDArray):
        arr = np.frombuffer(value.data, dtype=np.dtype(value.dtype)).reshape(value.shape)
        return arr
    if isinstance(value, dict):
        return {k: from_transport(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [from_transport(v) for v in value]
    return value


def encode(message: dict[str, Any]) -> bytes:
    payload = encode_value(to_transport(message))
    if len(payload) > MAX_MESSAGE:
        raise ValueError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE}")
    return HEADER.pack(len(payload)) + payload


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise PipeClosed("pipe closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int) -> dict[str, Any]:
    (length,) = HEADER.unpack(_read_exact(fd, HEADER.size))
    if length > MAX_MESSAGE:
        raise ValueError(f"message of {length} bytes exceeds {MAX_MESSAGE}")
    return from_transport(decode_value(_read_exact(fd, length)))


def write_message(fd: int, message: dict[str, Any]) -> None:
    data = memoryview(encode(message))
    while data:
        written = os.write(fd, data)
        data = data[written:]
