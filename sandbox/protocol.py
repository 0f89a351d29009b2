"""Messages between the supervisor and its worker: length-prefixed CBOR over pipes.

A frame is a 4-byte big-endian length, then one CBOR map; a length over the limit
(default 16 MiB) is refused before the body is read. Requests:

    {op: "load", hash, source, name}
        -> {ok: true, hash, entries: [name, ...]} | {ok: false, problems: [{rule, message, line, col}]}
           | {ok: false, rule, message, line}        (the module's top level broke a rule)
    {op: "call", hash, entry, params, state,
     window: {name: [t_off, t_n, v_off, v_n]}      (float64 arrays in the shared arena)
     | window_inline: {name: [t, v]}               (a window too big for the arena)
     | results: {vehicle: value}}
        -> {ok: true, value, flags} | {ok: false, rule, message, line}
    {op: "ping"} -> {ok: true}

Every reply also carries `stdout` (what the module printed, bounded) and `cpu` (the
worker's CPU seconds so far). Once, from the worker at start:
{ready: true, ok: true, pid, cpu, layers: [{name, applied, detail}]}.

Numeric arrays in params, state, results and values travel as RFC 8746 typed arrays
(raw little-endian bytes, tag 40 for the shape), never as lists of floats; boolean
arrays use the uint8-clamped tag (68) so they come back as booleans. Window arrays
do not travel here: they are in the shared-memory arena (arena.py), but for a window
larger than the arena, which comes inline as typed arrays.

The supervisor decodes what an untrusted process wrote, so decoding is strict: no
indefinite lengths, no tags but typed arrays, no simple values but false/true/null,
text map keys only, a bounded depth, and a bounded number of items (checked by a scan
of the bytes before any object is built, so a 16 MiB frame of empty lists cannot
become gigabytes of Python objects in the agent).

One codec with the network's: the typed-array tags, the number of dimensions, the
item scan and its counting rule (every CBOR header is an item) and the framing are
`wire`'s (wire.values, wire.scan, wire.framing); only the numpy side lives here
(`wire` may not import numpy). The result check (results.py) charges a value by the
same rule (`wire.values.array_items`), within `wire.values.MAX_ITEMS`, so what it
lets out fits this pipe's budget and every peer's.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from typing import Any

import cbor2
import numpy as np

from oodida.wire import scan as wire_scan
from oodida.wire.errors import RemoteProtocolError
from oodida.wire.framing import HEADER as FRAME_HEADER
from oodida.wire.framing import FrameDecoder
from oodida.wire.values import BOOL_TAG, DTYPE_TAGS, MAX_NDIM, MULTI_DIM_TAG
from oodida.wire.values import MAX_ITEMS as VALUE_ITEMS

HEADER = FRAME_HEADER
MAX_MESSAGE = 16 * 2**20
MAX_ITEMS = VALUE_ITEMS + 100_000  # a value the result check let out, and room for the envelope
MAX_DEPTH = 64

# numpy dtype -> RFC 8746 tag (little-endian variants) and back: the network's table,
# and booleans as uint8 clamped
_DTYPE_TAG = {dtype: tag for dtype, (tag, _) in DTYPE_TAGS.items()} | {"|b1": BOOL_TAG}
_TAG_DTYPE = {tag: np.dtype(dt) for dt, tag in _DTYPE_TAG.items()}
_SHAPE_TAG = MULTI_DIM_TAG
_ALLOWED_TAGS = frozenset(_TAG_DTYPE) | {_SHAPE_TAG}
# Tags cbor2 decodes into rich objects by itself (datetime, Decimal, regex, MIME,
# UUID, sets, IP addresses, shared/string references ...): refused outright.
_CBOR2_SEMANTIC_TAGS = (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004, 55799)


class ProtocolError(ValueError):
    """A frame that is not what the protocol allows."""


class MessageTooLarge(ProtocolError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit}")
        self.size = size
        self.limit = limit


class PipeClosed(EOFError):
    pass


# --- encoding ------------------------------------------------------------------------------


def _array_tag(arr: np.ndarray) -> cbor2.CBORTag:
    arr = np.asarray(arr)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.bool_, copy=False)
    elif arr.dtype.kind in "iuf":
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    dt = arr.dtype.str
    if dt not in _DTYPE_TAG:
        raise TypeError(f"arrays of dtype {arr.dtype} cannot be sent")
    typed = cbor2.CBORTag(_DTYPE_TAG[dt], np.ascontiguousarray(arr).tobytes())
    if arr.ndim == 1:
        return typed
    return cbor2.CBORTag(_SHAPE_TAG, [list(arr.shape), typed])


def _encode_default(encoder: cbor2.CBOREncoder, value: Any) -> None:
    if isinstance(value, np.ndarray):
        encoder.encode(_array_tag(value))
    elif isinstance(value, np.generic):
        encoder.encode(value.item())
    elif all(hasattr(value, a) for a in ("dtype", "shape", "data")) and isinstance(value.data, bytes):
        # wire.values.NDArray (the server's decoded results): raw bytes with dtype and shape
        arr = np.frombuffer(value.data, dtype=np.dtype(value.dtype)).reshape(tuple(value.shape))
        encoder.encode(_array_tag(arr))
    else:
        raise TypeError(f"a value of type {type(value).__name__} cannot be sent to the sandbox")


def encode(message: Mapping[str, Any], max_bytes: int = MAX_MESSAGE) -> bytes:
    """One frame: header and CBOR body. MessageTooLarge past `max_bytes`."""
    body = cbor2.dumps(message, default=_encode_default)
    if len(body) > max_bytes:
        raise MessageTooLarge(len(body), max_bytes)
    return HEADER.pack(len(body)) + body


# --- decoding ------------------------------------------------------------------------------


def scan(payload: bytes, max_items: int = MAX_ITEMS) -> int:
    """Check the shape of a CBOR item without building it; the number of items
    (wire.scan.scan: every header counts, tags included)."""
    try:
        return wire_scan.scan(payload, max_items, _ALLOWED_TAGS)
    except wire_scan.ScanError as exc:
        raise ProtocolError(str(exc)) from None


def _refuse_tag(*args: Any) -> Any:
    raise ProtocolError("CBOR tag not allowed")


def _object_hook(decoder: Any, value: Any) -> Any:
    if not isinstance(value, dict):  # (decoder, value) or (value, immutable) across cbor2 versions
        value = decoder
    for key in value:
        if type(key) is not str:
            raise ProtocolError(f"map key of type {type(key).__name__}; only text keys are allowed")
    return value


def _tag_hook(writable: bool) -> Any:
    def hook(*args: Any) -> Any:
        tag = next(a for a in args if isinstance(a, cbor2.CBORTag))
        dtype = _TAG_DTYPE.get(tag.tag)
        if dtype is not None:
            data = tag.value
            if type(data) is not bytes or len(data) % dtype.itemsize:
                raise ProtocolError(f"typed array tag {tag.tag} needs a byte string of whole items")
            if dtype.kind == "b" and data.count(0) + data.count(1) != len(data):
                raise ProtocolError("boolean array with values other than 0 and 1")
            arr = np.frombuffer(data, dtype=dtype)
            return arr.copy() if writable else arr
        if tag.tag == _SHAPE_TAG:
            value = tag.value
            # cbor2 decodes a tag's content as immutable: tuples, not lists
            if not (type(value) in (list, tuple) and len(value) == 2 and isinstance(value[1], np.ndarray)):
                raise ProtocolError("tag 40 must wrap [shape, typed array]")
            shape = value[0]
            if (
                type(shape) not in (list, tuple) or len(shape) > MAX_NDIM
                or not all(type(d) is int and d >= 0 for d in shape)
                or int(np.prod(shape, dtype=np.int64)) != value[1].size
            ):
                raise ProtocolError("tag 40: bad shape")
            return value[1].reshape(tuple(shape))
        raise ProtocolError(f"CBOR tag {tag.tag} is not allowed")

    return hook


_HOOKS = {False: _tag_hook(False), True: _tag_hook(True)}
_SEMANTIC = {tag: _refuse_tag for tag in _CBOR2_SEMANTIC_TAGS}


def decode(
    payload: bytes, *, writable: bool = False, max_items: int = MAX_ITEMS, from_supervisor: bool = False
) -> dict[str, Any]:
    """The message in one frame body. Arrays come back as numpy arrays: read-only
    views of the received bytes, or private writable copies with `writable`.
    `from_supervisor` (the worker reading a request): the bytes were written by our
    own encoder, so the walk for simple values is skipped; tags, depth, duplicate and
    non-text keys are still refused by the decoder itself."""
    if len(payload) > max_items:  # every item takes at least one byte: only then can there be too many
        scan(payload, max_items)
    try:
        message = cbor2.loads(
            payload,
            tag_hook=_HOOKS[writable],
            object_hook=_object_hook,
            semantic_decoders=_SEMANTIC,
            max_depth=MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )
    except ProtocolError:
        raise
    except RecursionError:
        raise ProtocolError("CBOR nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 — cbor2 raises many types on malformed input
        cause = exc.__cause__ if isinstance(exc.__cause__, ProtocolError) else None
        if cause is not None:
            raise cause from None
        raise ProtocolError(f"undecodable CBOR: {exc}") from None
    if type(message) is not dict:
        raise ProtocolError(f"a message must be a CBOR map, got {type(message).__name__}")
    if len(payload) <= max_items and not from_supervisor:
        _check_plain(message)
    return message


def _check_plain(value: Any) -> None:
    """What `scan` checks, on a small decoded message: no simple values or undefined."""
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is dict:
            stack.extend(v.values())
        elif t is list:
            stack.extend(v)
        elif not (v is None or t in (bool, int, float, str, bytes, np.ndarray)):
            raise ProtocolError(f"a value of type {t.__name__} is not allowed")


# --- framing ---------------------------------------------------------------------------------


class FrameReader:
    """Bytes in, whole frame bodies out (wire.framing.FrameDecoder); refuses a frame
    over the limit from its header."""

    def __init__(self, max_bytes: int = MAX_MESSAGE) -> None:
        self.max_bytes = max_bytes
        self._decoder = FrameDecoder(max_frame=max_bytes)

    def feed(self, data: bytes) -> list[bytes]:
        frames = []
        try:
            self._decoder.receive_data(data)
            while (frame := self._decoder.next_frame()) is not None:
                frames.append(frame)
        except RemoteProtocolError as exc:  # a frame over the limit, or of length 0
            raise ProtocolError(exc.reason) from None
        return frames


# --- blocking I/O (the worker's side: nothing but read and write on its pipes) ----------------


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        try:
            chunk = os.read(fd, min(n, 1 << 20))
        except InterruptedError:
            continue
        if not chunk:
            raise PipeClosed("pipe closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, max_bytes: int = MAX_MESSAGE) -> bytes:
    (length,) = HEADER.unpack(_read_exact(fd, HEADER.size))
    if length > max_bytes:
        raise MessageTooLarge(length, max_bytes)
    return _read_exact(fd, length)


def read_message(fd: int, max_bytes: int = MAX_MESSAGE, *, writable: bool = False) -> dict[str, Any]:
    return decode(read_frame(fd, max_bytes), writable=writable)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        except BrokenPipeError:
            raise PipeClosed("pipe closed") from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise PipeClosed("pipe closed") from None
            raise
        view = view[written:]


def write_message(fd: int, message: Mapping[str, Any], max_bytes: int = MAX_MESSAGE) -> None:
    write_all(fd, encode(message, max_bytes))
