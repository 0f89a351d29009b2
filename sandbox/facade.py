"""The modules analysts may import: curated facades, never the real modules.

The real numpy reaches ctypes, memory maps and files (`np.ctypeslib`, `np.load`,
`np.memmap`, `ndarray.tofile`); the facade hands out a fixed surface of array
math. Facades are read-only objects, built once per worker, so one module cannot
poison what another (or its own next call) sees.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Callable

import numpy as np

_NUMPY_FUNCTIONS = (
    "abs all any arange arctan2 argmax argmin argsort array asarray bincount ceil clip concatenate corrcoef "
    "count_nonzero cov cumsum diff dot exp floor full histogram interp isfinite isnan linspace log log1p "
    "matmul max maximum mean median min minimum nanmax nanmean nanmin nanstd ones percentile polyfit quantile "
    "round searchsorted sin cos tan sort sqrt stack std sum unique var where zeros"
).split()
_NUMPY_CONSTANTS = {"nan": np.nan, "inf": np.inf, "pi": np.pi, "e": np.e}
_NUMPY_DTYPES = {"float64": np.float64, "float32": np.float32, "int64": np.int64, "int32": np.int32, "bool_": np.bool_}
_BAD_KINDS = set("OSUVMm")  # object, bytes, str, void, datetime, timedelta
_BAD_KEYWORDS = {"out", "like", "where_out"}


class Facade:
    """A read-only namespace: attribute reads only, no writes, no underscores."""

    __slots__ = ("_facade_name", "_members")

    def __init__(self, name: str, members: dict[str, Any]) -> None:
        object.__setattr__(self, "_facade_name", name)
        object.__setattr__(self, "_members", dict(members))

    def __getattr__(self, name: str) -> Any:
        members = object.__getattribute__(self, "_members")
        if name in members:
            return members[name]
        raise AttributeError(f"{object.__getattribute__(self, '_facade_name')}.{name} is not available in the sandbox")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("sandbox modules are read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("sandbox modules are read-only")

    def __dir__(self) -> list[str]:
        return sorted(object.__getattribute__(self, "_members"))

    def __repr__(self) -> str:
        return f"<sandbox module {object.__getattribute__(self, '_facade_name')}>"


def _checked_dtype(dtype: Any) -> None:
    if dtype is not None and np.dtype(dtype).kind in _BAD_KINDS:
        raise ValueError(f"dtype {np.dtype(dtype)} is not allowed in the sandbox (numeric dtypes only)")


def _guard(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        bad = _BAD_KEYWORDS & set(kwargs)
        if bad:
            raise ValueError(f"numpy.{name}: keyword {sorted(bad)[0]!r} is not allowed in the sandbox")
        _checked_dtype(kwargs.get("dtype"))
        result = fn(*args, **kwargs)
        if isinstance(result, np.ndarray) and result.dtype.kind in _BAD_KINDS:
            raise ValueError(f"numpy.{name} made an array of dtype {result.dtype}; numeric dtypes only")
        return result

    guarded.__name__ = name
    return guarded


def numpy_facade() -> Facade:
    members: dict[str, Any] = {name: _guard(getattr(np, name), name) for name in _NUMPY_FUNCTIONS}
    members["norm"] = _guard(np.linalg.norm, "norm")
    members.update(_NUMPY_CONSTANTS)
    members.update(_NUMPY_DTYPES)
    return Facade("numpy", members)


def math_facade() -> Facade:
    return Facade("math", {n: getattr(math, n) for n in dir(math) if not n.startswith("_")})


def statistics_facade() -> Facade:
    names = "mean median median_low median_high mode stdev pstdev variance pvariance quantiles fmean geometric_mean"
    return Facade("statistics", {n: getattr(statistics, n) for n in names.split()})


FACADES: dict[str, Callable[[], Facade]] = {
    "numpy": numpy_facade,
    "math": math_facade,
    "statistics": statistics_facade,
}
