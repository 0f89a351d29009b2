"""What a module may return, checked by exact type before anything else touches it.

Only plain data and numeric numpy arrays leave the worker: a subclass of dict, str or
int could run code when the agent compares, hashes or encodes it, so `type(x) is
dict`, never `isinstance`. The value comes back as a fresh copy in plain types:
tuples become lists, numpy scalars become int/float/bool, arrays become private
C-contiguous little-endian copies. Depth, item count and size are bounded (the
budget counts what would be sent: a list holding one string ten times pays ten
times). Items are counted by the one rule every peer applies (wire.values): one per
value and per dict key, an array `array_items(shape)` (its CBOR headers, its
dimensions, one per 64 elements, one per row a reader's tolist() would build), so a
value let out here is never refused for its size by the pipe, the agent, the server
or a renderer, and a value too large is refused here, as "result too large", inside
the call's budget. Arrays have at most `MAX_NDIM` dimensions. Integers must fit
CBOR's 64-bit integers. NaN and infinities are allowed
(they are data) but each is flagged with its path, e.g. "nan at $.mean.SPEED".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from oodida.sandbox.errors import Rule, Violation
from oodida.wire.values import MAX_ITEMS, MAX_NDIM, array_items

ALLOWED = "None, bool, int, float, str, bytes, list, tuple, dict (with str keys) or a numeric numpy array"
NUMERIC_KINDS = frozenset("biuf")  # bool, signed, unsigned, floating
MAX_INT = 2**64  # CBOR major types 0 and 1 carry -2**64 .. 2**64 - 1
MAX_FLAGS = 100
_NUMPY_SCALARS = (np.bool_, np.integer, np.floating)


def _path(parts: list[Any]) -> str:
    out = ["$"]
    for p in parts:
        if type(p) is int:
            out.append(f"[{p}]")
        else:
            key = p if len(p) <= 40 else p[:37] + "..."
            out.append(f".{key}" if key.isidentifier() else f"[{key!r}]")
    return "".join(out)


def check_result(
    value: Any, *, max_depth: int = 32, max_items: int = MAX_ITEMS, max_bytes: int = 16 * 2**20
) -> tuple[Any, list[str]]:
    """(a plain copy of `value`, flags); raises Violation(DISALLOWED_RETURN or
    RESULT_TOO_LARGE) naming what and where."""
    flags: list[str] = []
    more_flags = 0
    items = 0
    nbytes = 0
    parts: list[Any] = []  # the path to where we are, made a string only when needed

    def flag(text: str) -> None:
        nonlocal more_flags
        if len(flags) < MAX_FLAGS:
            flags.append(text)
        else:
            more_flags += 1

    def spend(n_items: int, n_bytes: int) -> None:
        nonlocal items, nbytes
        items += n_items
        nbytes += n_bytes
        if nbytes > max_bytes:
            raise Violation(Rule.RESULT_TOO_LARGE, f"the result takes more than {max_bytes} bytes (at {_path(parts)})")
        if items > max_items:
            raise Violation(Rule.RESULT_TOO_LARGE, f"the result has more than {max_items} items (at {_path(parts)})")

    def refuse(what: str) -> Violation:
        return Violation(Rule.DISALLOWED_RETURN, f"{what} at {_path(parts)} is not allowed; return {ALLOWED}")

    def walk(v: Any, depth: int) -> Any:
        t = type(v)
        if v is None or t is bool:
            spend(1, 1)
            return v
        if t is int:
            if not -MAX_INT <= v < MAX_INT:
                raise Violation(Rule.RESULT_TOO_LARGE, f"an integer at {_path(parts)} does not fit in 64 bits")
            spend(1, 9)
            return v
        if t is float:
            if math.isnan(v):
                flag(f"nan at {_path(parts)}")
            elif v in (math.inf, -math.inf):
                flag(f"{v} at {_path(parts)}")
            spend(1, 9)
            return v
        if t is str:
            spend(1, 9 + (len(v) if v.isascii() else 4 * len(v)))
            if not v.isascii():
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    raise refuse("a str with unpaired surrogates") from None
            return v
        if t is bytes:
            spend(1, 9 + len(v))
            return v
        if t is list or t is tuple or t is dict:  # at most max_depth containers, one inside the other
            if depth >= max_depth:
                raise Violation(Rule.RESULT_TOO_LARGE,
                                f"the result is nested deeper than {max_depth} levels (at {_path(parts)})")
            spend(1, 9)
            if t is dict:
                out: dict[str, Any] = {}
                for key, item in v.items():
                    if type(key) is not str:
                        raise refuse(f"a dict key of type {type(key).__name__}")
                    if not key.isascii():
                        try:
                            key.encode("utf-8")
                        except UnicodeEncodeError:
                            raise refuse("a dict key with unpaired surrogates") from None
                    spend(1, 9 + len(key))
                    parts.append(key)
                    out[key] = walk(item, depth + 1)
                    parts.pop()
                return out
            result = []
            for i, item in enumerate(v):
                parts.append(i)
                result.append(walk(item, depth + 1))
                parts.pop()
            return result
        if t is np.ndarray:
            if v.dtype.kind not in NUMERIC_KINDS:
                raise refuse(f"an array of dtype {v.dtype}")
            if v.ndim > MAX_NDIM:
                raise Violation(Rule.RESULT_TOO_LARGE,
                                f"an array of {v.ndim} dimensions at {_path(parts)}; at most {MAX_NDIM} can be sent")
            spend(0, 9 * (3 + v.ndim) + v.nbytes)  # before any copy: a huge array costs nothing
            charge = array_items(v.shape)
            if charge > max_items:  # (e.g. a zero-size array whose rows a reader would build)
                raise Violation(Rule.RESULT_TOO_LARGE, f"an array of shape {v.shape} at {_path(parts)} counts "
                                f"as {charge} items, more than the {max_items} a result may have")
            spend(charge, 0)
            arr = np.array(v, dtype=v.dtype.newbyteorder("<"), order="C", copy=True)
            if arr.dtype.kind == "f" and arr.size:
                nan = int(np.count_nonzero(np.isnan(arr)))
                inf = int(np.count_nonzero(np.isinf(arr)))
                if nan:
                    flag(f"{nan} nan at {_path(parts)}")
                if inf:
                    flag(f"{inf} inf at {_path(parts)}")
            return arr
        if isinstance(v, _NUMPY_SCALARS) and t.__module__ == "numpy":
            plain = v.item()  # np.float64 -> float, np.int32 -> int, np.bool_ -> bool
            if type(plain) in (bool, int, float):
                return walk(plain, depth)  # (np.longdouble stays itself: refused below)
        raise refuse(f"a value of type {t.__name__}")

    checked = walk(value, 0)
    if more_flags:
        flags.append(f"... and {more_flags} more non-finite values")
    return checked, flags
