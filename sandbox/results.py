"""What a module may return, checked by exact type before anything else touches it.

Only plain data and numeric numpy arrays leave the worker: a subclass of dict or int
could run code when the agent compares, hashes or encodes it, so `type(x) is dict`,
never `isinstance`. Depth and size are bounded; NaN and infinities are allowed (they
are data) but every one is flagged with its path so analysts see them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sandbox.errors import Rule, Violation

ALLOWED = "None, bool, int, float, str, bytes, list, tuple, dict (str keys) or a numeric numpy array"
_NUMERIC_KINDS = set("biuf")
MAX_INT = 2**64


def check_result(
    value: Any, *, max_depth: int = 32, max_items: int = 1_000_000, max_bytes: int = 16 * 2**20
) -> tuple[Any, list[str]]:
    """(a plain copy of `value`, flags); raises Violation naming the rule broken."""
    flags: list[str] = []
    budget = {"items": max_items, "bytes": max_bytes}

    def spend(items: int, nbytes: int, path: str) -> None:
        budget["items"] -= items
        budget["bytes"] -= nbytes
        if budget["items"] < 0:
            raise Violation(Rule.RESULT_TOO_LARGE, f"more than {max_items} items (at {path})")
        if budget["bytes"] < 0:
            raise Violation(Rule.RESULT_TOO_LARGE, f"more than {max_bytes} bytes (at {path})")

    def walk(v: Any, path: str, depth: int) -> Any:
        if depth > max_depth:
            raise Violation(Rule.RESULT_TOO_LARGE, f"nested deeper than {max_depth} levels (at {path})")
        t = type(v)
        if v is None or t is bool:
            spend(1, 1, path)
            return v
        if t is int:
            if not -MAX_INT < v < MAX_INT:
                raise Violation(Rule.RESULT_TOO_LARGE, f"integer beyond 64 bits at {path}")
            spend(1, 9, path)
            return v
        if t is float:
            if not math.isfinite(v):
                flags.append(f"{v} at {path}")
            spend(1, 9, path)
            return v
        if t is str or t is bytes:
            spend(1, len(v) + 1, path)
            return v
        if t is list or t is tuple:
            spend(1, 1, path)
            return [walk(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(v)]
        if t is dict:
            spend(1, 1, path)
            out = {}
            for key, item in v.items():
                if type(key) is not str:
                    raise Violation(Rule.DISALLOWED_RETURN, f"dict key {type(key).__name__} at {path}; keys must be str")
                out[key] = walk(item, f"{path}.{key}", depth + 1)
            return out
        if t is np.ndarray:
            if v.dtype.kind not in _NUMERIC_KINDS:
                raise Violation(Rule.DISALLOWED_RETURN, f"array of dtype {v.dtype} at {path}; numeric arrays only")
            spend(max(1, v.size // 64), v.nbytes, path)
            arr = np.ascontiguousarray(v).astype(v.dtype.newbyteorder("<"), copy=True)
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                flags.append(f"{int((~np.isfinite(arr)).sum())} non-finite values at {path}")
            return arr
        if t in (np.float64, np.float32, np.int64, np.int32, np.bool_, np.uint8, np.int8, np.int16, np.uint16,
                 np.uint32, np.uint64, np.float16):
            return walk(v.item(), path, depth)
        raise Violation(Rule.DISALLOWED_RETURN, f"a value of type {t.__name__} at {path} is not allowed; return {ALLOWED}")

    return walk(value, "$", 0), flags
