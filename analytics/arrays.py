"""numpy <-> wire: the one place where analytics values become plain data and back.

`wire` may not import numpy, so arrays travel as `wire.values.NDArray` (dtype string,
shape, raw little-endian bytes). Converting at the edge, once, keeps methods free to
use numpy and keeps the protocol free of it. Incoming arrays are views on the
received bytes (read-only, no copy): methods never write into a partial.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from oodida.wire.errors import ValidationError
from oodida.wire.values import NDArray

_PLAIN = (bool, int, float, str, bytes)


def _array_to_wire(array: np.ndarray) -> NDArray:
    if array.dtype.kind == "b":
        array = array.astype(np.uint8)  # no bool element type on the wire
    if array.dtype.kind not in "iuf":
        raise TypeError(f"an array of dtype {array.dtype} cannot be sent; only integer and float arrays can")
    # (not ascontiguousarray: it turns a 0-d array into a 1-d one)
    array = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")
    try:
        return NDArray(array.dtype.str, tuple(int(n) for n in array.shape), array.tobytes(order="C"))
    except ValidationError as exc:  # e.g. float128: numeric, but no wire type
        raise TypeError(f"an array of dtype {array.dtype} cannot be sent: {exc}") from None


def to_wire(value: Any) -> Any:
    """Deep-convert a partial or state to what `wire` can carry: numpy arrays become
    NDArray, numpy scalars Python numbers, tuples lists. Anything else that is not
    plain data is a TypeError naming its type, raised here rather than deep inside
    the encoder where the culprit is lost."""
    if value is None or type(value) in _PLAIN or type(value) is NDArray:
        return value
    if isinstance(value, np.ndarray):
        return _array_to_wire(value)
    if isinstance(value, np.generic):
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            return float(value)
        raise TypeError(f"a numpy {type(value).__name__} cannot be sent")
    if isinstance(value, (list, tuple)):
        return [to_wire(item) for item in value]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"map keys must be str to be sent, got key {key!r} of type {type(key).__name__}")
            out[str(key)] = to_wire(item)
        return out
    raise TypeError(f"a value of type {type(value).__name__} cannot be sent; plain data and numpy arrays only")


def from_wire(value: Any) -> Any:
    """Deep-convert received values: NDArray becomes a read-only numpy view of its bytes."""
    if type(value) is NDArray:
        return np.frombuffer(value.data, dtype=np.dtype(value.dtype)).reshape(value.shape)
    if isinstance(value, (list, tuple)):
        return [from_wire(item) for item in value]
    if isinstance(value, dict):
        return {key: from_wire(item) for key, item in value.items()}
    return value


def to_json_ready(value: Any) -> Any:
    """A value for people and scripts: arrays to lists, NaN and infinities to strings
    (JSON has no spelling for them)."""
    value = from_wire(value)
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): to_json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
