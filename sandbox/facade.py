"""The modules analysts may import: curated facades, never the real modules.

The real numpy reaches ctypes, memory maps and files (`np.ctypeslib`, `np.load`,
`np.memmap`, `np.lib`, `ndarray.tofile`); the facade hands out a fixed surface of
array math instead. Every numpy function is wrapped (`Guarded`):

- no `out=` (by keyword or by position) and no `like=`: a function returns a new
  array, it never writes into one the analyst names;
- ufuncs take no `where=`: without `out` it leaves the elements it skips
  uninitialised, that is whatever the heap held before (another module's data);
- no object, string, bytes, void or datetime dtypes, asked for or produced:
  object arrays hold arbitrary Python objects, and no result may carry one.

A facade is a read-only object with no `__name__`, `__path__` or `__dict__`: a
`from numpy import ctypeslib` cannot fall back to `sys.modules["numpy.ctypeslib"]`
(CPython's IMPORT_FROM does so when the module object has a `__name__`). Each
loaded module gets its own facade objects, so even a write that got past the
guards would reach no other module.

Everything is introspected here, at import time: the worker imports this module
before its seccomp filter loads, and nothing below imports lazily.
"""

from __future__ import annotations

import inspect
import math
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np

# numpy functions the facade offers, by the name user code sees.
NUMPY_FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: getattr(np, name)
    for name in [
        "abs", "all", "any", "arange", "arctan2", "argmax", "argmin", "argsort", "array", "asarray", "bincount",
        "ceil", "clip", "concatenate", "corrcoef", "cos", "count_nonzero", "cov", "cumsum", "diff", "dot", "exp",
        "floor", "full", "histogram", "interp", "isfinite", "isnan", "linspace", "log", "log1p", "matmul", "max",
        "maximum", "mean", "median", "min", "minimum", "nanmax", "nanmean", "nanmin", "nanstd", "ones",
        "percentile", "polyfit", "quantile", "round", "searchsorted", "sin", "sort", "sqrt", "stack", "std",
        "sum", "tan", "unique", "var", "where", "zeros",
    ]
}
NUMPY_FUNCTIONS["empty"] = np.zeros  # np.empty hands out uninitialised memory: zeros instead
NUMPY_FUNCTIONS["norm"] = np.linalg.norm
NUMPY_CONSTANTS: dict[str, Any] = {"nan": np.nan, "inf": np.inf, "pi": np.pi, "e": np.e}
NUMPY_TYPES: dict[str, Any] = {
    "float64": np.float64, "float32": np.float32, "int64": np.int64, "int32": np.int32,
    "uint8": np.uint8, "bool_": np.bool_,
}
STATISTICS_FUNCTIONS = [
    "fmean", "geometric_mean", "harmonic_mean", "mean", "median", "median_high", "median_low", "mode",
    "multimode", "pstdev", "pvariance", "quantiles", "stdev", "variance", "correlation", "covariance",
    "linear_regression",
]

# Kinds of dtype that never enter or leave a facade function: object, bytes, str,
# void (structured/raw), datetime, timedelta, numpy 2's variable-width strings.
BAD_KINDS = frozenset("OSUVMmT")
_REFUSED_KEYWORDS = frozenset({"out", "like"})


class MissingMember(AttributeError):
    """A facade does not offer the attribute asked for (`np.load`)."""


class ForbiddenDtype(ValueError):
    """A facade function was asked for, or would have made, a non-numeric array."""


def check_dtype(dtype: Any, where: str) -> None:
    """Refuse a dtype argument of a non-numeric kind (None means numpy's default)."""
    if dtype is None:
        return
    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        return  # not a dtype at all: numpy itself says so when it is called
    if kind in BAD_KINDS:
        raise ForbiddenDtype(f"{where}: dtype {np.dtype(dtype)} is not allowed in the sandbox (numeric dtypes only)")


def check_output(value: Any, where: str) -> Any:
    """Refuse a result that is (or holds, in a tuple or list) a non-numeric array."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in BAD_KINDS:
            raise ForbiddenDtype(
                f"{where} would make an array of dtype {value.dtype}; only numeric arrays are allowed in the sandbox"
            )
    elif isinstance(value, np.generic):
        if value.dtype.kind in BAD_KINDS:
            raise ForbiddenDtype(f"{where} would make a value of dtype {value.dtype}; numeric only")
    elif type(value) is tuple:  # np.histogram, np.unique(..., return_counts=True), ...
        for item in value:
            if isinstance(item, (np.ndarray, np.generic, tuple)):
                check_output(item, where)
    return value


class Spec:
    """How one callable may be called: how many positional arguments (those after
    `out` or `like` are refused), which keywords, where its dtype argument sits."""

    __slots__ = ("dtype_position", "keywords", "max_positional")

    def __init__(self, max_positional: int | None, keywords: frozenset[str] | None, dtype_position: int | None):
        self.max_positional = max_positional
        self.keywords = keywords
        self.dtype_position = dtype_position

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> Spec:
        if isinstance(fn, np.ufunc):
            return cls(fn.nin, frozenset({"dtype"}), None)  # no out, no where (see above)
        params = list(inspect.signature(fn).parameters.values())
        positional = [
            p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        stop = next((i for i, name in enumerate(positional) if name in _REFUSED_KEYWORDS), None)
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            stop = None
        keywords = frozenset(
            p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ) - _REFUSED_KEYWORDS
        dtype_position = positional.index("dtype") if "dtype" in positional else None
        if dtype_position is not None and stop is not None and dtype_position >= stop:
            dtype_position = None
        return cls(stop, keywords, dtype_position)


class Guarded:
    """A facade function: calls the real one within its Spec and checks what it
    returns. A slotted object, not a Python function: it has no `__globals__`,
    `__code__`, `__wrapped__` or `__dict__` to reach through, and no attribute to set."""

    __slots__ = ("_fn", "_name", "_spec")

    def __init__(self, fn: Callable[..., Any], name: str, spec: Spec | None = None) -> None:
        object.__setattr__(self, "_fn", fn)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_spec", spec if spec is not None else Spec.of(fn))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name, spec = self._name, self._spec
        if spec.max_positional is not None and len(args) > spec.max_positional:
            raise ValueError(
                f"{name} takes at most {spec.max_positional} positional arguments in the sandbox "
                "(no out argument: functions return new arrays)"
            )
        if kwargs:
            for key in kwargs:
                if key in _REFUSED_KEYWORDS or (spec.keywords is not None and key not in spec.keywords):
                    raise ValueError(f"{name}: keyword argument {key!r} is not allowed in the sandbox")
            check_dtype(kwargs.get("dtype"), name)
        if spec.dtype_position is not None and len(args) > spec.dtype_position:
            check_dtype(args[spec.dtype_position], name)
        return check_output(self._fn(*args, **kwargs), name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("sandbox functions are read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("sandbox functions are read-only")

    def __repr__(self) -> str:
        return f"<sandbox function {self._name}>"


class Facade:
    """A read-only namespace: attribute reads of its members only, no writes, no
    dunders (no `__name__`: see the module docstring)."""

    __slots__ = ("_facade_name", "_members")

    def __init__(self, name: str, members: dict[str, Any]) -> None:
        object.__setattr__(self, "_facade_name", name)
        object.__setattr__(self, "_members", dict(members))

    def __getattr__(self, name: str) -> Any:
        members = object.__getattribute__(self, "_members")
        if not name.startswith("_") and name in members:
            return members[name]
        raise MissingMember(f"{object.__getattribute__(self, '_facade_name')}.{name} is not available in the sandbox")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("sandbox modules are read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("sandbox modules are read-only")

    def __dir__(self) -> list[str]:
        return sorted(object.__getattribute__(self, "_members"))

    def __repr__(self) -> str:
        return f"<sandbox module {object.__getattribute__(self, '_facade_name')}>"

    def __reduce__(self) -> Any:
        raise TypeError("sandbox modules cannot be pickled")


# Built once, at import: the Guarded wrappers are immutable, so facades share them.
_NUMPY_MEMBERS: dict[str, Any] = {name: Guarded(fn, f"numpy.{name}") for name, fn in NUMPY_FUNCTIONS.items()}
_NUMPY_MEMBERS.update(NUMPY_CONSTANTS)
_NUMPY_MEMBERS.update(NUMPY_TYPES)
# math is safe as it is: C functions and floats. A copy of its public names, so
# that nothing can reach (or replace) the module object itself.
_MATH_MEMBERS: dict[str, Any] = {n: getattr(math, n) for n in dir(math) if not n.startswith("_")}
_STATISTICS_MEMBERS: dict[str, Any] = {
    n: Guarded(getattr(statistics, n), f"statistics.{n}", Spec(None, None, None))
    for n in STATISTICS_FUNCTIONS if hasattr(statistics, n)
}
_STATISTICS_MEMBERS["StatisticsError"] = statistics.StatisticsError


def numpy_facade() -> Facade:
    return Facade("numpy", _NUMPY_MEMBERS)


def math_facade() -> Facade:
    return Facade("math", _MATH_MEMBERS)


def statistics_facade() -> Facade:
    return Facade("statistics", _STATISTICS_MEMBERS)


FACADES: dict[str, Callable[[], Facade]] = {
    "math": math_facade,
    "numpy": numpy_facade,
    "statistics": statistics_facade,
}
# What each importable name offers: the compile check refuses `from numpy import
# load` and `np.load` before the module ever runs.
FACADE_MEMBERS: dict[str, frozenset[str]] = {
    "math": frozenset(_MATH_MEMBERS),
    "numpy": frozenset(_NUMPY_MEMBERS),
    "statistics": frozenset(_STATISTICS_MEMBERS),
}
