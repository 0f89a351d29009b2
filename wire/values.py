"""Result values on the wire: plain data plus numeric arrays as raw bytes.

Arrays travel as RFC 8746 CBOR typed arrays (raw little-endian bytes with a tag that
names the element type; tag 40 adds the shape), never as lists of floats: a window of
a million samples costs 8 MB, not 9 MB of CBOR floats plus the time to build them.
`wire` may not import numpy, so a decoded array is an `NDArray` (dtype, shape, bytes);
the packages that do numeric work turn it into a numpy array without a copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from oodida.wire.errors import ValidationError

# dtype string (numpy's notation, little endian) -> (RFC 8746 tag, item size in bytes)
DTYPE_TAGS: dict[str, tuple[int, int]] = {
    "|u1": (64, 1),
    "<u2": (69, 2),
    "<u4": (70, 4),
    "<u8": (71, 8),
    "|i1": (72, 1),
    "<i2": (77, 2),
    "<i4": (78, 4),
    "<i8": (79, 8),
    "<f2": (84, 2),
    "<f4": (85, 4),
    "<f8": (86, 8),
}
TAG_DTYPES: dict[int, str] = {tag: dtype for dtype, (tag, _) in DTYPE_TAGS.items()}
MULTI_DIM_TAG = 40
MAX_NDIM = 8
# uint8 clamped: booleans between a sandbox worker and its supervisor (the network
# carries them as uint8, analytics.arrays.to_wire)
BOOL_TAG = 68
MAX_ITEMS = 1_000_000  # in one value (result, state, partial): `count_items`


def array_items(shape: tuple[int, ...] | list[int]) -> int:
    """What an array is charged against the item budget, by whoever counts (the
    sandbox's result check, `check_value` on every peer): its CBOR headers (typed
    array tag and bytes; with tag 40 also the [shape, data] pair, the shape list and
    one per dimension), one per 64 elements, and one per row of every dimension but
    the last: the nested lists a reader's `tolist()` builds. So a zero-size array is
    not free: `np.zeros((10**9, 0))` is 16 bytes on the wire and 10**9 lists in a
    renderer, and is charged 10**9."""
    ndim = len(shape)
    size = math.prod(shape)
    charge = (2 if ndim == 1 else 5 + ndim) + size // 64
    rows = 1
    for n in shape[:-1]:
        rows *= n
        charge += rows
        if charge > 2**62:  # past any budget: stop multiplying
            break
    return charge


@dataclass(frozen=True, slots=True)
class NDArray:
    """A numeric array as it travels: numpy dtype string, shape, raw row-major bytes."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_TAGS:
            raise ValidationError(f"array dtype {self.dtype!r} is not one of {sorted(DTYPE_TAGS)}")
        if len(self.shape) > MAX_NDIM:
            raise ValidationError(f"array has {len(self.shape)} dimensions, at most {MAX_NDIM} allowed")
        if any(not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in self.shape):
            raise ValidationError(f"array shape {self.shape!r} must be non-negative integers")
        itemsize = DTYPE_TAGS[self.dtype][1]
        expected = math.prod(self.shape) * itemsize
        if len(self.data) != expected:
            raise ValidationError(
                f"array of dtype {self.dtype} and shape {self.shape} needs {expected} bytes, got {len(self.data)}"
            )

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def check_value(value: Any, *, max_depth: int = 32, max_items: int = MAX_ITEMS) -> None:
    """Refuse anything but plain data: None, bool, int, float, str, bytes, list, dict
    with str keys, and NDArray; bounded in depth and in total number of items.

    Items are counted by the one rule the sandbox's result check also applies: one
    per value, one per dict key, an array `array_items(shape)`. A value the sandbox
    let out is never refused here for its size.

    cbor2 decodes many semantic tags into rich Python objects (datetime, Decimal, sets,
    regexes...); a result value must be none of those, whatever a peer sends.
    """
    budget = [max_items]

    def walk(v: Any, depth: int) -> None:
        if depth > max_depth:
            raise ValidationError(f"value nested deeper than {max_depth} levels")
        budget[0] -= 1
        if budget[0] < 0:
            raise ValidationError(f"value has more than {max_items} items")
        t = type(v)
        if v is None or t in (bool, int, float, str, bytes):
            return
        if t is NDArray:
            budget[0] -= array_items(v.shape) - 1  # (its first item is counted above)
            if budget[0] < 0:
                raise ValidationError(f"value has more than {max_items} items")
            return
        if t in (list, tuple):
            for item in v:
                walk(item, depth + 1)
            return
        if t is dict:
            budget[0] -= len(v)  # its keys
            if budget[0] < 0:
                raise ValidationError(f"value has more than {max_items} items")
            for key, item in v.items():
                if type(key) is not str:
                    raise ValidationError(f"dict key {key!r} is a {type(key).__name__}, only str keys are allowed")
                walk(item, depth + 1)
            return
        raise ValidationError(f"a value of type {t.__name__} is not allowed in a result")

    walk(value, 0)
