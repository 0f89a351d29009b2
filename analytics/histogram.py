"""Histograms whose fleet counts are the sum of the vehicles' counts.

Bins are fixed up front (in the params), never derived from a vehicle's data: bins
that depend on the data differ per vehicle and cannot be added. Values outside the
edges are counted in `below` and `above` rather than dropped as np.histogram drops
them, so a badly chosen range shows in the result instead of hiding data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from oodida.analytics.base import MethodError, SignalwiseMethod, finite_float, float_list
from oodida.analytics.series import Series

MAX_BINS = 100_000  # a histogram is a summary; this many bins is a typo or an attack

BINS_HELP = "a list of edges, {'count': n, 'range': [lo, hi]}, or a map signal -> either"


@dataclass(frozen=True)
class Bins:
    """Parsed bins of one signal. `count` and `range` are set for equal-width bins,
    which np.histogram computes on its faster path (same counts as for the edges)."""

    edges: np.ndarray
    count: int | None = None
    range: tuple[float, float] | None = None


def _is_uniform(spec: Any) -> bool:
    return (
        isinstance(spec, Mapping)
        and set(spec) == {"count", "range"}
        and not isinstance(spec["count"], (list, tuple, Mapping))
    )


def parse_bins(spec: Any, signal: str) -> Bins:
    where = f"histogram: bins for signal {signal!r}"
    if _is_uniform(spec):
        count, span = spec["count"], spec["range"]
        if type(count) is not int or not 1 <= count <= MAX_BINS:
            raise MethodError(f"{where}: 'count' must be an integer from 1 to {MAX_BINS}, got {count!r}")
        if not isinstance(span, (list, tuple)) or len(span) != 2:
            raise MethodError(f"{where}: 'range' must be [lo, hi], got {span!r}")
        lo, hi = (finite_float("histogram", "bins", x) for x in span)
        if not lo < hi:
            raise MethodError(f"{where}: 'range' needs lo < hi, got [{lo!r}, {hi!r}]")
        return Bins(np.linspace(lo, hi, count + 1), count, (lo, hi))
    if isinstance(spec, (list, tuple)):
        edges = float_list("histogram", "bins", spec, min_len=2)
        if len(edges) > MAX_BINS + 1:
            raise MethodError(f"{where}: at most {MAX_BINS} bins, got {len(edges) - 1}")
        array = np.array(edges, dtype=np.float64)
        if not bool(np.all(array[1:] > array[:-1])):
            raise MethodError(f"{where}: edges must be strictly increasing, got {edges}")
        return Bins(array)
    raise MethodError(f"{where} must be {BINS_HELP}; got {spec!r}")


class Histogram(SignalwiseMethod):
    name = "histogram"
    param_names = frozenset({"bins"})

    def check_params(self, params: Mapping[str, Any], signals: Sequence[str]) -> None:
        super().check_params(params, signals)
        raw = params.get("bins")
        if isinstance(raw, Mapping) and not _is_uniform(raw):
            extra = sorted(set(raw) - set(signals))
            if extra:
                raise MethodError(f"histogram: bins given for signals the assignment does not read: {extra}")

    def settings(self, params: Mapping[str, Any], signal: str) -> Bins:
        raw = params.get("bins")
        if raw is None:
            raise MethodError(f"histogram: param 'bins' is required: {BINS_HELP}")
        if isinstance(raw, Mapping) and not _is_uniform(raw):
            if signal not in raw:
                raise MethodError(f"histogram: param 'bins' has no bins for signal {signal!r}")
            raw = raw[signal]
        return parse_bins(raw, signal)

    def partial_of(self, series: Series, bins: Bins) -> dict[str, Any]:
        v = series.v
        if bins.count is not None:
            counts, _ = np.histogram(v, bins=bins.count, range=bins.range)
        else:
            counts, _ = np.histogram(v, bins=bins.edges)
        return {
            "edges": bins.edges,
            "counts": counts.astype(np.int64),
            "below": int(np.count_nonzero(v < bins.edges[0])),
            "above": int(np.count_nonzero(v > bins.edges[-1])),
        }

    def load(self, partial: Any) -> dict[str, Any]:
        edges = np.asarray(partial["edges"], dtype=np.float64)
        counts = np.asarray(partial["counts"])
        if edges.ndim != 1 or edges.size < 2 or counts.shape != (edges.size - 1,):
            raise ValueError(f"need 1-D edges and one count fewer, got shapes {edges.shape} and {counts.shape}")
        if counts.dtype.kind not in "iu" or np.any(counts < 0):
            raise ValueError("counts must be non-negative integers")
        below, above = partial["below"], partial["above"]
        if type(below) is not int or type(above) is not int or below < 0 or above < 0:
            raise ValueError(f"below and above must be non-negative ints, got {below!r} and {above!r}")
        return {"edges": edges, "counts": counts.astype(np.int64), "below": below, "above": above}

    def merge(self, partials: Sequence[Mapping[str, Any]], bins: Bins) -> dict[str, Any]:
        counts = np.zeros(bins.edges.size - 1, dtype=np.int64)
        below = above = 0
        for p in partials:
            if not np.array_equal(p["edges"], bins.edges):
                # Adding counts of different bins would be a silent lie.
                raise MethodError("histogram: a vehicle used other bin edges than the assignment's")
            counts += p["counts"]
            below += p["below"]
            above += p["above"]
        return {"edges": bins.edges, "counts": counts, "below": below, "above": above}

    def readable(self, partial: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "edges": [float(e) for e in partial["edges"]],
            "counts": [int(c) for c in partial["counts"]],
            "below": partial["below"],
            "above": partial["above"],
        }
