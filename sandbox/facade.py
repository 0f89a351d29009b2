"""The modules analysts may import: curated facades, never the real modules.

The real numpy reaches ctypes, memory maps and files (`np.ctypeslib`, `np.load`,
`np.memmap`, `np.lib`, `ndarray.tofile`); the facade hands out a fixed surface of
array math instead. Every function (numpy's, math's, statistics') and every method
of an array or numpy scalar is wrapped (`Guarded`) within an allow-list (`Spec`):
how many positional arguments, which keywords; any other keyword is refused, so a
keyword a later numpy adds stays closed until it is looked at here. The tables
(NUMPY_SPECS, METHOD_SPECS_TABLE) are what `oodida check --allowed` prints.

- no `out=` (by keyword or by position), `like=`, `subok=` or `device=`: a function
  returns a new array, it never writes into one the analyst names;
- `where=` only on reductions, which fill what they skip with their identity or
  `initial`; a ufunc or clip with `where=` and no `out` leaves the elements it
  skips uninitialised, that is whatever the heap held before (another module's
  data); `np.empty` is `np.zeros`;
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

# numpy functions the facade offers, by the name user code sees, each with its
# allow-list: how many positional arguments (none of them `out`), which keywords
# (never out, like, subok, device or overwrite_input; `where` only on reductions,
# which fill what they skip with their identity or `initial`), and where a dtype
# argument sits among the positional ones. A keyword not listed is refused, so a
# keyword numpy adds in a later release stays closed until it is looked at here.
# "ufunc" means: its inputs, and dtype= (no out, no where: a ufunc leaves what
# where= skips uninitialised, whatever the heap held before).
_R = "axis keepdims where"  # a reduction's keywords
NUMPY_SPECS: dict[str, tuple[int | str | None, str, int | None]] = {
    # name: (max positional | "ufunc", "keywords", dtype position)
    "abs": ("ufunc", "", None), "absolute": ("ufunc", "", None), "all": (2, _R, None), "any": (2, _R, None),
    "allclose": (5, "rtol atol equal_nan", None), "append": (3, "axis", None),
    "arange": (3, "stop step dtype", None), "arccos": ("ufunc", "", None), "arcsin": ("ufunc", "", None),
    "arctan": ("ufunc", "", None), "arctan2": ("ufunc", "", None), "argmax": (2, "axis keepdims", None),
    "argmin": (2, "axis keepdims", None), "argsort": (3, "axis kind stable", None), "argwhere": (1, "", None),
    "around": (2, "decimals", None), "array": (2, "dtype copy order ndmin", 1), "array_equal": (3, "equal_nan", None),
    "asarray": (2, "dtype order copy", 1), "average": (4, "axis weights returned keepdims", None),
    "bincount": (3, "weights minlength", None), "ceil": ("ufunc", "", None), "clip": (3, "a_min a_max min max", None),
    "column_stack": (1, "", None), "concatenate": (2, "axis dtype casting", None),
    "convolve": (3, "mode", None), "corrcoef": (3, "y rowvar dtype", None), "correlate": (3, "mode", None),
    "cos": ("ufunc", "", None), "cosh": ("ufunc", "", None), "count_nonzero": (2, "axis keepdims", None),
    "cov": (7, "y rowvar bias ddof fweights aweights dtype", None), "cross": (6, "axisa axisb axisc axis", None),
    "cumprod": (3, "axis dtype", 2), "cumsum": (3, "axis dtype", 2), "deg2rad": ("ufunc", "", None),
    "degrees": ("ufunc", "", None), "delete": (3, "axis", None), "diag": (2, "k", None),
    "diff": (5, "n axis prepend append", None), "digitize": (3, "right", None), "dot": (2, "", None),
    "exp": ("ufunc", "", None), "expand_dims": (2, "axis", None), "expm1": ("ufunc", "", None),
    "eye": (4, "M k dtype order", 3), "flatnonzero": (1, "", None), "flip": (2, "axis", None),
    "floor": ("ufunc", "", None), "floor_divide": ("ufunc", "", None), "fmax": ("ufunc", "", None),
    "fmin": ("ufunc", "", None), "full": (4, "fill_value dtype order", 2),
    "full_like": (3, "fill_value dtype shape", 2), "gradient": (None, "axis edge_order", None),
    "histogram": (5, "bins range density weights", None), "histogram2d": (6, "bins range density weights", None),
    "hstack": (1, "dtype casting", None), "hypot": ("ufunc", "", None), "identity": (2, "dtype", 1),
    "insert": (4, "axis", None), "interp": (6, "left right period", None), "isclose": (5, "rtol atol equal_nan", None),
    "isfinite": ("ufunc", "", None), "isinf": ("ufunc", "", None), "isnan": ("ufunc", "", None),
    "lexsort": (2, "axis", None), "linspace": (7, "num endpoint retstep dtype axis", 5),
    "log": ("ufunc", "", None), "log10": ("ufunc", "", None), "log1p": ("ufunc", "", None),
    "log2": ("ufunc", "", None), "logical_and": ("ufunc", "", None), "logical_not": ("ufunc", "", None),
    "logical_or": ("ufunc", "", None), "matmul": ("ufunc", "", None), "max": (2, _R + " initial", None),
    "maximum": ("ufunc", "", None), "mean": (3, _R + " dtype", 2), "median": (2, "axis keepdims", None),
    "min": (2, _R + " initial", None), "minimum": ("ufunc", "", None), "mod": ("ufunc", "", None),
    "nan_to_num": (5, "copy nan posinf neginf", None), "nanmax": (2, _R + " initial", None),
    "nanmean": (3, _R + " dtype", 2), "nanmedian": (2, "axis keepdims", None), "nanmin": (2, _R + " initial", None),
    "nanpercentile": (3, "axis method keepdims weights", None),
    "nanquantile": (3, "axis method keepdims weights", None), "nanstd": (3, _R + " dtype ddof mean correction", 2),
    "nansum": (3, _R + " dtype initial", 2), "nanvar": (3, _R + " dtype ddof mean correction", 2),
    "nonzero": (1, "", None), "ones": (3, "dtype order", 1), "ones_like": (2, "dtype shape", 1),
    "outer": (2, "", None), "percentile": (3, "axis method keepdims weights", None),
    "polyfit": (7, "rcond full w cov", None), "polyval": (2, "", None), "power": ("ufunc", "", None),
    "prod": (3, _R + " dtype initial", 2), "ptp": (2, "axis keepdims", None),
    "quantile": (3, "axis method keepdims weights", None), "rad2deg": ("ufunc", "", None),
    "radians": ("ufunc", "", None), "ravel": (2, "order", None), "repeat": (3, "axis", None),
    "reshape": (3, "shape order copy", None), "rint": ("ufunc", "", None), "roll": (3, "shift axis", None),
    "round": (2, "decimals", None), "searchsorted": (4, "side sorter", None), "sign": ("ufunc", "", None),
    "sin": ("ufunc", "", None), "sinh": ("ufunc", "", None), "sort": (3, "axis kind stable", None),
    "sqrt": ("ufunc", "", None), "square": ("ufunc", "", None), "squeeze": (2, "axis", None),
    "stack": (2, "axis dtype casting", None), "std": (3, _R + " dtype ddof mean correction", 2),
    "sum": (3, _R + " dtype initial", 2), "tan": ("ufunc", "", None), "tanh": ("ufunc", "", None),
    "tile": (2, "", None), "trace": (5, "offset axis1 axis2 dtype", 4), "transpose": (2, "axes", None),
    "trapezoid": (4, "x dx axis", None), "trunc": ("ufunc", "", None),
    "unique": (5, "return_index return_inverse return_counts axis equal_nan sorted", None),
    "var": (3, _R + " dtype ddof mean correction", 2), "vstack": (1, "dtype casting", None),
    "zeros": (3, "dtype order", 1), "zeros_like": (2, "dtype shape", 1),
}


def _where(condition: Any, x: Any, y: Any) -> Any:
    """np.where(condition, x, y): the three-argument form only (the one-argument
    form is np.nonzero, which the facade offers under its own name)."""
    return np.where(condition, x, y)


NUMPY_FUNCTIONS: dict[str, Callable[..., Any]] = {name: getattr(np, name) for name in NUMPY_SPECS}
# np.empty hands out uninitialised memory: zeros instead (and no empty_like at all).
NUMPY_ALIASES: dict[str, str] = {"empty": "zeros"}
NUMPY_EXTRA: dict[str, tuple[Callable[..., Any], tuple[int | str, str, int | None], int]] = {
    # name: (function, spec, fewest positional arguments)
    "norm": (np.linalg.norm, (4, "ord axis keepdims", None), 1),
    "where": (_where, (3, "", None), 3),
}
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

# Methods of arrays and numpy scalars, on an instance (`a.sum()`) or through its
# type (`np.float64.astype(x, ...)`, one positional more: the instance): the same
# allow-lists. A method not named here (resize, choose, getfield, to_device, a
# method a later numpy adds, ...) is not available.
_MR = "axis keepdims where"
METHOD_SPECS_TABLE: dict[str, tuple[int | None, str, int | None]] = {
    "all": (1, _MR, None), "any": (1, _MR, None), "argmax": (1, "axis keepdims", None),
    "argmin": (1, "axis keepdims", None), "argpartition": (3, "kth axis kind", None),
    "argsort": (2, "axis kind stable", None), "as_integer_ratio": (0, "", None),
    "astype": (1, "dtype order casting copy", 0), "bit_count": (0, "", None), "byteswap": (1, "inplace", None),
    "clip": (2, "min max", None), "compress": (2, "condition axis", None), "conj": (0, "", None),
    "conjugate": (0, "", None), "copy": (1, "order", None), "cumprod": (2, "axis dtype", 1),
    "cumsum": (2, "axis dtype", 1), "diagonal": (3, "offset axis1 axis2", None), "dot": (1, "", None),
    "fill": (1, "", None), "flatten": (1, "order", None), "hex": (0, "", None), "is_integer": (0, "", None),
    "item": (None, "", None), "max": (1, _MR + " initial", None), "mean": (2, _MR + " dtype", 1),
    "min": (1, _MR + " initial", None), "nonzero": (0, "", None), "partition": (3, "kth axis kind", None),
    "prod": (2, _MR + " dtype initial", 1), "put": (3, "mode", None), "ravel": (1, "order", None),
    "repeat": (2, "repeats axis", None), "reshape": (None, "order copy", None), "round": (1, "decimals", None),
    "searchsorted": (3, "v side sorter", None), "sort": (2, "axis kind stable", None),
    "squeeze": (1, "axis", None), "std": (2, _MR + " dtype ddof mean correction", 1),
    "sum": (2, _MR + " dtype initial", 1), "swapaxes": (2, "", None), "take": (2, "indices axis mode", None),
    "tobytes": (1, "order", None), "tolist": (0, "", None), "trace": (4, "offset axis1 axis2 dtype", 3),
    "transpose": (None, "", None), "var": (2, _MR + " dtype ddof mean correction", 1),
    "view": (1, "dtype", 0),
}

# Kinds of dtype that never enter or leave a facade function: object, bytes, str,
# void (structured/raw), datetime, timedelta, numpy 2's variable-width strings.
BAD_KINDS = frozenset("OSUVMmT")
# Never allowed, whatever a table says: they write into, or return, what the
# analyst did not make (out, like, subok), or name hardware (device).
_REFUSED_KEYWORDS = frozenset({"out", "like", "subok", "device", "overwrite_input"})


class MissingMember(AttributeError):
    """A facade does not offer the attribute asked for (`np.load`)."""


class ForbiddenDtype(ValueError):
    """A facade function was asked for, or would have made, a non-numeric array."""


def _why_refused(dt: np.dtype) -> str | None:
    """Why arrays of this dtype may not exist in the sandbox, or None."""
    if dt.kind in BAD_KINDS:
        return "numeric dtypes only"
    if dt.kind in "fc" and dt.itemsize > (8 if dt.kind == "f" else 16):
        # long double (float128, complex256): 10 bytes of value in 16, and numpy never
        # writes the other 6: whatever the heap held shows through tobytes() or a view
        return "extended precision leaves padding bytes uninitialised; use float64"
    return None


def check_dtype(dtype: Any, where: str) -> None:
    """Refuse a dtype argument of a non-numeric kind, or one with padding (None
    means numpy's default)."""
    if dtype is None:
        return
    try:
        dt = np.dtype(dtype)
    except TypeError:
        return  # not a dtype at all: numpy itself says so when it is called
    why = _why_refused(dt)
    if why is not None:
        raise ForbiddenDtype(f"{where}: dtype {dt} is not allowed in the sandbox ({why})")


def check_output(value: Any, where: str) -> Any:
    """Refuse a result that is (or holds, in a tuple or list) a non-numeric array,
    or one with padding."""
    if isinstance(value, np.ndarray):
        why = _why_refused(value.dtype)
        if why is not None:
            raise ForbiddenDtype(
                f"{where} would make an array of dtype {value.dtype}; only numeric arrays are allowed in the sandbox"
                + ("" if why == "numeric dtypes only" else f" ({why})")
            )
    elif isinstance(value, np.generic):
        why = _why_refused(value.dtype)
        if why is not None:
            raise ForbiddenDtype(f"{where} would make a value of dtype {value.dtype}; numeric only"
                                 + ("" if why == "numeric dtypes only" else f" ({why})"))
    elif type(value) is tuple:  # np.histogram, np.unique(..., return_counts=True), ...
        for item in value:
            if isinstance(item, (np.ndarray, np.generic, tuple)):
                check_output(item, where)
    return value


class Spec:
    """How one callable may be called: how many positional arguments (at least,
    at most; never `out` or `like`), which keywords (an allow-list: any other is
    refused), where its dtype argument sits among the positional ones."""

    __slots__ = ("dtype_position", "keywords", "max_positional", "min_positional")

    def __init__(self, max_positional: int | None, keywords: frozenset[str], dtype_position: int | None,
                 min_positional: int = 0):
        if type(keywords) is not frozenset:
            raise TypeError("a Spec's keywords are an allow-list (a frozenset)")
        self.max_positional = max_positional
        self.keywords = keywords - _REFUSED_KEYWORDS
        self.dtype_position = dtype_position
        self.min_positional = min_positional

    @classmethod
    def table(cls, entry: tuple[int | str | None, str, int | None], fn: Any = None, min_positional: int = 0) -> Spec:
        """A Spec from one row of NUMPY_SPECS or METHOD_SPECS_TABLE."""
        positional, keywords, dtype_position = entry
        if positional == "ufunc":
            return cls(fn.nin, frozenset({"dtype"}), None, fn.nin)  # no out, no where (see above)
        assert positional is None or type(positional) is int
        return cls(positional, frozenset(keywords.split()), dtype_position, min_positional)

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> Spec:
        """The Spec of a plain Python or C function with a signature: its positional
        parameters and its keywords (math, statistics: no memory behind them)."""
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):  # math.log, math.hypot: positional only
            return cls(None, frozenset(), None)
        stop = None if any(p.kind is p.VAR_POSITIONAL for p in params) else sum(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
        keywords = frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        return cls(stop, keywords, None)

    def shifted(self) -> Spec:
        """The same method reached through its type: the instance comes first."""
        return Spec(None if self.max_positional is None else self.max_positional + 1, self.keywords,
                    None if self.dtype_position is None else self.dtype_position + 1, self.min_positional + 1)


class Guarded:
    """A facade function: calls the real one within its Spec and checks what it
    returns. A slotted object, not a Python function: it has no `__globals__`,
    `__code__`, `__wrapped__` or `__dict__` to reach through, and no attribute to set."""

    __slots__ = ("_fn", "_name", "_spec")
    _fn: Callable[..., Any]
    _name: str
    _spec: Spec

    def __init__(self, fn: Callable[..., Any], name: str, spec: Spec) -> None:
        object.__setattr__(self, "_fn", fn)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_spec", spec)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name, spec = self._name, self._spec
        if spec.max_positional is not None and len(args) > spec.max_positional:
            raise ValueError(
                f"{name} takes at most {spec.max_positional} positional arguments in the sandbox "
                "(no out argument: functions return new arrays)"
            )
        if len(args) < spec.min_positional:
            raise ValueError(f"{name} takes at least {spec.min_positional} positional arguments in the sandbox")
        if kwargs:
            for key in kwargs:
                if key not in spec.keywords:
                    allowed = ", ".join(sorted(spec.keywords)) or "none"
                    raise ValueError(f"{name}: keyword argument {key!r} is not allowed in the sandbox "
                                     f"(allowed: {allowed})")
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
NUMPY_GUARDED: dict[str, Guarded] = {
    name: Guarded(fn, f"numpy.{name}", Spec.table(NUMPY_SPECS[name], fn)) for name, fn in NUMPY_FUNCTIONS.items()
}
for _name, (_fn, _entry, _least) in NUMPY_EXTRA.items():
    NUMPY_GUARDED[_name] = Guarded(_fn, f"numpy.{_name}", Spec.table(_entry, _fn, _least))
for _name, _target in NUMPY_ALIASES.items():
    NUMPY_GUARDED[_name] = NUMPY_GUARDED[_target]
_NUMPY_MEMBERS: dict[str, Any] = dict(NUMPY_GUARDED)
_NUMPY_MEMBERS.update(NUMPY_CONSTANTS)
_NUMPY_MEMBERS.update(NUMPY_TYPES)
# math has no memory behind it (C functions and floats), but its functions are
# wrapped all the same, each within its own signature: one rule for every facade.
_MATH_MEMBERS: dict[str, Any] = {
    n: (Guarded(f, f"math.{n}", Spec.of(f)) if callable(f) else f)
    for n, f in ((n, getattr(math, n)) for n in dir(math) if not n.startswith("_"))
}
_STATISTICS_MEMBERS: dict[str, Any] = {
    n: Guarded(getattr(statistics, n), f"statistics.{n}", Spec.of(getattr(statistics, n)))
    for n in STATISTICS_FUNCTIONS if hasattr(statistics, n)
}
_STATISTICS_MEMBERS["StatisticsError"] = statistics.StatisticsError
METHOD_SPECS: dict[str, Spec] = {name: Spec.table(entry) for name, entry in METHOD_SPECS_TABLE.items()}
TYPE_METHOD_SPECS: dict[str, Spec] = {name: spec.shifted() for name, spec in METHOD_SPECS.items()}


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
