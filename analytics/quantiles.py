"""Exact fleet quantiles from value -> count maps.

Quantiles do not merge from per-vehicle quantiles, and sketches (t-digest, KLL) are
approximate. Sensor signals are quantised by their DBC scale, so the distinct values
of a window are few (a steering-angle sensor with 1.5 degree steps gives a handful,
a speed signal with 0.01 km/h steps a few thousand): a value -> count map is small and
merges exactly by addition. The fleet quantile is then read off the merged counts
with numpy's 'linear' rule, step for step, so it equals `np.quantile` over all
vehicles' samples put together, bit for bit, without rebuilding that array.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from oodida.analytics.base import MethodError, SignalwiseMethod, finite_float
from oodida.analytics.series import Series

DEFAULT_Q = (0.25, 0.5, 0.75)


def value_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values (ascending, NaN last) and how often each occurs."""
    distinct, counts = np.unique(np.asarray(values, dtype=np.float64), return_counts=True)
    return distinct, counts.astype(np.int64)


def merge_counts(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Add value -> count maps; the result is sorted and has each value once."""
    values = np.concatenate([np.asarray(v, dtype=np.float64) for v, _ in parts] or [np.empty(0)])
    counts = np.concatenate([np.asarray(c, dtype=np.int64) for _, c in parts] or [np.empty(0, np.int64)])
    if values.size == 0:
        return values, counts
    order = np.argsort(values, kind="stable")
    values, counts = values[order], counts[order]
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    return values[starts], np.add.reduceat(counts, starts)


def quantiles_from_counts(values: np.ndarray, counts: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """`np.quantile(data, q)` (method 'linear') where data has `counts[i]` copies of
    `values[i]`, values ascending. Mirrors numpy's `_quantile` arithmetic so the
    result is bit-identical, including its NaN handling."""
    quantiles = np.asarray(q, dtype=np.float64)
    n = int(np.sum(counts))
    if n == 0:
        raise ValueError("no samples to take quantiles of")
    cumulative = np.cumsum(counts)

    # numpy: virtual index (n - 1) * q, neighbours floor and floor + 1, clamped with
    # numpy's own -1 convention (which also feeds into gamma).
    virtual = (n - 1) * quantiles
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= n - 1
    previous[above] = -1
    following[above] = -1
    below = virtual < 0
    previous[below] = 0
    following[below] = 0
    previous = previous.astype(np.intp)
    following = following.astype(np.intp)
    gamma = np.asarray(virtual - previous, dtype=virtual.dtype)

    def at_rank(ranks: np.ndarray) -> np.ndarray:
        ranks = np.where(ranks < 0, ranks + n, ranks)
        return values[np.searchsorted(cumulative, ranks, side="right")]

    a, b = at_rank(previous), at_rank(following)
    # numpy's _lerp; infinities give nan there too, and numpy warns where we do not.
    with np.errstate(invalid="ignore", over="ignore"):
        diff = b - a
        result: np.ndarray = np.add(a, diff * gamma)
        np.subtract(b, diff * (1 - gamma), out=result, where=gamma >= 0.5, casting="unsafe")
    if np.isnan(values[-1]):  # numpy sorts NaN last and answers NaN for the slice
        result[:] = np.nan
    return result


def q_key(q: float) -> str:
    """A quantile as a result key: JSON and our wire format take only str keys."""
    return repr(float(q))


class Quantiles(SignalwiseMethod):
    name = "quantiles"
    param_names = frozenset({"q"})

    def settings(self, params: Mapping[str, Any], signal: str) -> list[float]:
        raw = params.get("q", list(DEFAULT_Q))
        if not isinstance(raw, (list, tuple)) or not raw:
            raise MethodError(f"quantiles: param 'q' must be a non-empty list of numbers in [0, 1], got {raw!r}")
        q = [finite_float(self.name, "q", x) for x in raw]
        bad = [x for x in q if not 0.0 <= x <= 1.0]
        if bad:
            raise MethodError(f"quantiles: param 'q' must lie in [0, 1], got {bad}")
        return q

    def partial_of(self, series: Series, q: list[float]) -> dict[str, Any]:
        values, counts = value_counts(series.v)
        return {"values": values, "counts": counts, "q": q}

    def load(self, partial: Any) -> dict[str, Any]:
        values = np.asarray(partial["values"])
        counts = np.asarray(partial["counts"])
        if values.ndim != 1 or counts.shape != values.shape:
            raise ValueError(f"values and counts must be 1-D of one length, got {values.shape} and {counts.shape}")
        if values.size and values.dtype.kind not in "iuf":
            raise TypeError(f"values must be numbers, got dtype {values.dtype}")
        if counts.size and (counts.dtype.kind not in "iu" or np.any(counts < 0)):
            raise ValueError("counts must be non-negative integers")
        q = [float(x) for x in partial["q"]]
        if values.size > 1 and not bool(np.all(values[1:] > values[:-1])):
            # Not in np.unique's form (or a NaN at the end): normalise, since
            # quantiles_from_counts relies on ascending distinct values.
            values, counts = merge_counts([(values, counts)])
        return {"values": values.astype(np.float64, copy=False), "counts": counts.astype(np.int64), "q": q}

    def merge(self, partials: Sequence[Mapping[str, Any]], q: list[float]) -> dict[str, Any]:
        values, counts = merge_counts([(p["values"], p["counts"]) for p in partials])
        return {"values": values, "counts": counts, "q": q}

    def readable(self, partial: Mapping[str, Any]) -> dict[str, float | None]:
        q = partial["q"]
        if int(np.sum(partial["counts"])) == 0:
            return {q_key(x): None for x in q}
        result = quantiles_from_counts(partial["values"], partial["counts"], q)
        return {q_key(x): float(r) for x, r in zip(q, result, strict=True)}
