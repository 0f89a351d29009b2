"""Moments and order statistics whose partials merge exactly.

count, min, max and last merge trivially. The mean travels as (n, sum) and the
variance as (n, mean, M2), merged with Chan et al.'s formula for many parts at once,
because averaging the vehicles' means or variances would weight a vehicle with ten
samples like one with ten thousand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from oodida.analytics.base import SignalwiseMethod, int_param
from oodida.analytics.series import Series


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"a sample count must be a non-negative int, got {value!r}")
    return value


def _number(value: Any) -> float:
    if type(value) not in (int, float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _optional_number(value: Any) -> float | None:
    return None if value is None else _number(value)


class Count(SignalwiseMethod):
    name = "count"

    def partial_of(self, series: Series, settings: None) -> int:
        return len(series)

    def load(self, partial: Any) -> int:
        return _count(partial)

    def merge(self, partials: Sequence[int], settings: None) -> int:
        return sum(partials)

    def readable(self, partial: int) -> int:
        return partial


class _Extreme(SignalwiseMethod):
    reduce: Any  # np.min or np.max: they propagate NaN as numpy over all data would

    def partial_of(self, series: Series, settings: None) -> float | None:
        return float(type(self).reduce(series.v)) if len(series) else None

    def load(self, partial: Any) -> float | None:
        return _optional_number(partial)

    def merge(self, partials: Sequence[float | None], settings: None) -> float | None:
        values = [p for p in partials if p is not None]
        return float(type(self).reduce(np.array(values))) if values else None

    def readable(self, partial: float | None) -> float | None:
        return partial


class Min(_Extreme):
    name = "min"
    reduce = np.min


class Max(_Extreme):
    name = "max"
    reduce = np.max


class Mean(SignalwiseMethod):
    name = "mean"

    def partial_of(self, series: Series, settings: None) -> dict[str, Any]:
        # fsum is correctly rounded: a vehicle's sum does not depend on how its
        # samples happened to be ordered or chunked.
        return {"n": len(series), "sum": math.fsum(series.v.tolist())}

    def load(self, partial: Any) -> dict[str, Any]:
        return {"n": _count(partial["n"]), "sum": _number(partial["sum"])}

    def merge(self, partials: Sequence[Mapping[str, Any]], settings: None) -> dict[str, Any]:
        return {"n": sum(p["n"] for p in partials), "sum": math.fsum(p["sum"] for p in partials)}

    def readable(self, partial: Mapping[str, Any]) -> float | None:
        return partial["sum"] / partial["n"] if partial["n"] else None


class Variance(SignalwiseMethod):
    """Population variance by default (numpy's ddof=0); ddof=1 for the sample variance."""

    name = "variance"
    param_names = frozenset({"ddof"})

    def settings(self, params: Mapping[str, Any], signal: str) -> int:
        ddof = int_param(self.name, params, "ddof", 0, 0)
        assert ddof is not None
        return ddof

    def partial_of(self, series: Series, ddof: int) -> dict[str, Any]:
        n = len(series)
        if n == 0:
            return {"n": 0, "mean": 0.0, "m2": 0.0, "ddof": ddof}
        mean = math.fsum(series.v.tolist()) / n
        d = series.v - mean
        # Two passes plus the correction term of the "corrected two-pass" algorithm:
        # the second sum removes what rounding of the mean left behind.
        m2 = float(np.sum(d * d)) - float(np.sum(d)) ** 2 / n
        return {"n": n, "mean": mean, "m2": max(m2, 0.0), "ddof": ddof}

    def load(self, partial: Any) -> dict[str, Any]:
        loaded = {
            "n": _count(partial["n"]),
            "mean": _number(partial["mean"]),
            "m2": _number(partial["m2"]),
            "ddof": _count(partial["ddof"]),
        }
        if loaded["m2"] < 0:
            raise ValueError(f"m2 must not be negative, got {loaded['m2']!r}")
        return loaded

    def merge(self, partials: Sequence[Mapping[str, Any]], ddof: int) -> dict[str, Any]:
        parts = [p for p in partials if p["n"]]
        n = sum(p["n"] for p in parts)
        if n == 0:
            return {"n": 0, "mean": 0.0, "m2": 0.0, "ddof": ddof}
        mean = math.fsum(p["n"] * p["mean"] for p in parts) / n
        # Chan et al., for k parts at once: M2 = sum M2_i + sum n_i (mean_i - mean)^2.
        m2 = math.fsum(p["m2"] for p in parts) + math.fsum(p["n"] * (p["mean"] - mean) ** 2 for p in parts)
        return {"n": n, "mean": mean, "m2": m2, "ddof": ddof}

    def readable(self, partial: Mapping[str, Any]) -> float | None:
        dof = partial["n"] - partial["ddof"]
        # numpy answers nan with a warning here; None says "no answer" in JSON too.
        return partial["m2"] / dof if dof > 0 else None


class Std(Variance):
    name = "std"

    def readable(self, partial: Mapping[str, Any]) -> float | None:
        variance = super().readable(partial)
        return math.sqrt(variance) if variance is not None else None


class Last(SignalwiseMethod):
    """The most recent sample: what a dashboard shows as "current value"."""

    name = "last"

    def partial_of(self, series: Series, settings: None) -> dict[str, float | None]:
        if not len(series):
            return {"t": None, "value": None}
        return {"t": float(series.t[-1]), "value": float(series.v[-1])}

    def load(self, partial: Any) -> dict[str, float | None]:
        loaded = {"t": _optional_number(partial["t"]), "value": _optional_number(partial["value"])}
        if (loaded["t"] is None) != (loaded["value"] is None):
            raise ValueError("t and value must both be set or both be None")
        return loaded

    def merge(self, partials: Sequence[Mapping[str, float | None]], settings: None) -> dict[str, float | None]:
        best: Mapping[str, float | None] = {"t": None, "value": None}
        for p in partials:  # in vehicle order: a tie in t goes to the first vehicle
            if p["t"] is not None and (best["t"] is None or p["t"] > best["t"]):
                best = p
        return dict(best)

    def readable(self, partial: Mapping[str, float | None]) -> dict[str, float | None]:
        return dict(partial)

