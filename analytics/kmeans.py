"""Federated k-means: Lloyd's algorithm with one step per iteration of the assignment.

Each vehicle assigns its own points to the current centroids and sends, per
centroid, the sum of its points and their count. Sums and counts add up across
vehicles, so the server's new centroids are exactly those of a Lloyd step over all
vehicles' points together; no point leaves a vehicle.

The first iteration has no centroids (unless the analyst gave `init`): each vehicle
then proposes up to k of its points by k-means++ with a fixed seed, and the server
picks k of all proposals by farthest-first traversal starting from the point
farthest from their mean. Both choices are deterministic, so a re-run of an
assignment over the same data gives the same clusters.

Points are built from several signals sampled at different times: each timestamp of
the first feature becomes a point, with every other feature's value at or before
that time (zero-order hold, what the bus last said). Times before another feature's
first sample, and points with a non-finite coordinate, are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from oodida.analytics.base import MethodError, float_list, int_param, malformed, signal_list
from oodida.analytics.series import Window

DEFAULT_SEED = 0
_BLOCK_ROWS = 1 << 16  # bounds the scratch arrays of `nearest`


@dataclass(frozen=True)
class KMeansParams:
    k: int
    init: np.ndarray | None
    features: list[str] | None
    max_points: int | None
    seed: int


def parse_params(params: Mapping[str, Any]) -> KMeansParams:
    k = int_param("kmeans", params, "k", None, 1)
    if k is None:
        raise MethodError("kmeans: param 'k' (the number of clusters, an integer >= 1) is required")
    init = None
    if params.get("init") is not None:
        raw = params["init"]
        if not isinstance(raw, (list, tuple)) or len(raw) != k:
            raise MethodError(f"kmeans: param 'init' must be a list of k={k} points, got {raw!r}")
        rows = [float_list("kmeans", "init", p) for p in raw]
        if len({len(r) for r in rows}) != 1:
            raise MethodError("kmeans: the points of param 'init' must all have the same number of coordinates")
        init = np.array(rows, dtype=np.float64)
    features = params.get("features")
    if features is not None:
        if not isinstance(features, (list, tuple)) or not features or not all(type(f) is str for f in features):
            raise MethodError(f"kmeans: param 'features' must be a non-empty list of signal names, got {features!r}")
        if len(set(features)) != len(features):
            raise MethodError(f"kmeans: param 'features' names a signal twice: {features!r}")
        features = list(features)
    max_points = int_param("kmeans", params, "max_points", None, 1)
    seed = int_param("kmeans", params, "seed", DEFAULT_SEED, 0)
    assert seed is not None
    return KMeansParams(k, init, features, max_points, seed)


def points(window: Window, features: Sequence[str], max_points: int | None = None) -> np.ndarray:
    """The (n, len(features)) points of a window; see the module docstring."""
    d = len(features)
    series = [s for s in (window.get(name) for name in features) if s is not None]
    if len(series) < d or any(len(s) == 0 for s in series):
        return np.empty((0, d))
    first, others = series[0], series[1:]
    # Times before another feature's first sample form a prefix (t is ascending).
    start = int(np.searchsorted(first.t, max((s.t[0] for s in others), default=-np.inf), side="left"))
    rows: slice | np.ndarray = slice(start, None)
    if max_points is not None and len(first) - start > max_points:
        # Evenly spread over the window rather than its first or last part, and
        # chosen before aligning so that the cap also caps the work.
        rows = start + np.linspace(0, len(first) - start - 1, max_points).astype(np.intp)
    times = first.t[rows]
    columns = [first.v[rows]]
    for s in others:
        columns.append(s.v[np.searchsorted(s.t, times, side="right") - 1])
    finite = np.logical_and.reduce([np.isfinite(c) for c in columns])
    if not finite.all():
        columns = [c[finite] for c in columns]
    return np.column_stack(columns)


def _sqdist_to(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    diff = x - c
    squared: np.ndarray = np.einsum("ij,ij->i", diff, diff)
    return squared


def nearest(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centroid of each point (ties: the lowest index) and the
    squared distance to it. Differences, not the expanded |x|^2 - 2xc + |c|^2, which
    loses digits when points are far from the origin."""
    labels = np.empty(len(x), dtype=np.intp)
    d2min = np.empty(len(x))
    for start in range(0, len(x), _BLOCK_ROWS):
        part = x[start : start + _BLOCK_ROWS]
        d2 = np.empty((len(part), len(centroids)))
        for j, centroid in enumerate(centroids):
            d2[:, j] = _sqdist_to(part, centroid)
        lab = np.argmin(d2, axis=1)
        labels[start : start + _BLOCK_ROWS] = lab
        d2min[start : start + _BLOCK_ROWS] = d2[np.arange(len(part)), lab]
    return labels, d2min


def kmeans_plus_plus(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Up to k distinct rows of x by k-means++ seeding (fewer if x has fewer
    distinct points)."""
    if len(x) == 0:
        return x[:0].copy()
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(x)))]
    d2 = _sqdist_to(x, x[chosen[0]])
    while len(chosen) < k:
        cumulative = np.cumsum(d2)
        if not cumulative[-1] > 0:
            break  # every point sits on a chosen one
        i = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        if i >= len(x) or d2[i] == 0:  # rounding at the very end of the range
            i = int(np.flatnonzero(d2 > 0)[-1])
        chosen.append(i)
        d2 = np.minimum(d2, _sqdist_to(x, x[i]))
    return x[chosen].copy()


def farthest_first(candidates: np.ndarray, k: int) -> np.ndarray:
    """Up to k distinct rows, spread out: start from the row farthest from the mean,
    then repeatedly take the row farthest from those taken (ties: the first row)."""
    if len(candidates) == 0:
        return candidates[:0].copy()
    chosen = [int(np.argmax(_sqdist_to(candidates, candidates.mean(axis=0))))]
    dmin = _sqdist_to(candidates, candidates[chosen[0]])
    while len(chosen) < k:
        j = int(np.argmax(dmin))
        if not dmin[j] > 0:
            break
        chosen.append(j)
        dmin = np.minimum(dmin, _sqdist_to(candidates, candidates[j]))
    return candidates[chosen].copy()


def _matrix(value: Any, what: str, d: int | None = None) -> np.ndarray:
    m = np.asarray(value, dtype=np.float64)
    if m.ndim != 2 or (d is not None and m.shape[1] != d):
        want = f"(rows, {d})" if d is not None else "2-D"
        raise MethodError(f"kmeans: {what} must be a {want} matrix, got shape {m.shape}")
    if not bool(np.all(np.isfinite(m))):
        raise MethodError(f"kmeans: {what} must be finite")
    return m


def _state_centroids(state: Any) -> tuple[np.ndarray, list[str]] | None:
    if state is None:
        return None
    with malformed("kmeans"):
        if not isinstance(state, Mapping) or "centroids" not in state or "features" not in state:
            raise MethodError(f"kmeans: state must be {{'centroids', 'features'}}, got {state!r}")
        features = state["features"]
        if not isinstance(features, list) or not features or not all(type(f) is str for f in features):
            raise MethodError(f"kmeans: state features must be a non-empty list of names, got {features!r}")
        return _matrix(state["centroids"], "state centroids", len(features)), features


class KMeans:
    name = "kmeans"
    iterative = True
    param_names = frozenset({"k", "init", "features", "max_points", "seed"})

    def check_params(self, params: Mapping[str, Any], signals: Sequence[str]) -> None:
        p = parse_params(params)
        features = signal_list(self.name, "features", p.features, signals) if p.features else list(signals)
        if p.init is not None and p.init.shape[1] != len(features):
            raise MethodError(
                f"kmeans: the points of param 'init' have {p.init.shape[1]} coordinates, "
                f"but there are {len(features)} features {features}"
            )

    def on_board(self, window: Window, params: Mapping[str, Any], state: Any) -> dict[str, Any]:
        p = parse_params(params)
        current = _state_centroids(state)
        centroids: np.ndarray | None
        if current is not None:
            centroids, features = current
        else:
            features = p.features or list(window)
            centroids = p.init
        if not features:
            raise MethodError("kmeans: no features: the window has no signals")
        if centroids is not None and centroids.shape[1] != len(features):
            raise MethodError(f"kmeans: centroids have {centroids.shape[1]} coordinates for {len(features)} features")
        x = points(window, features, p.max_points)
        if centroids is None:
            return {"phase": "init", "features": features, "candidates": kmeans_plus_plus(x, p.k, p.seed), "n": len(x)}
        labels, d2 = nearest(x, centroids)
        k, d = centroids.shape
        sums = np.zeros((k, d))
        for j in range(d):
            sums[:, j] = np.bincount(labels, weights=x[:, j], minlength=k)
        return {
            "phase": "update",
            "features": features,
            "sums": sums,
            "counts": np.bincount(labels, minlength=k).astype(np.int64),
            "inertia": math.fsum(d2.tolist()),
            "n": len(x),
        }

    def _load(self, partial: Any) -> dict[str, Any]:
        phase = partial["phase"]
        features = partial["features"]
        if not isinstance(features, list) or not all(type(f) is str for f in features) or not features:
            raise ValueError(f"features must be a non-empty list of names, got {features!r}")
        n = partial["n"]
        if type(n) is not int or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        d = len(features)
        if phase == "init":
            candidates = _matrix(partial["candidates"], "candidates", d)
            return {"phase": phase, "features": features, "n": n, "candidates": candidates}
        if phase == "update":
            sums = _matrix(partial["sums"], "sums", d)
            counts = np.asarray(partial["counts"])
            if counts.shape != (len(sums),) or (counts.size and (counts.dtype.kind not in "iu" or np.any(counts < 0))):
                raise ValueError("counts must be one non-negative integer per centroid")
            inertia = partial["inertia"]
            if type(inertia) not in (int, float) or not inertia >= 0:
                raise ValueError(f"inertia must be a non-negative number, got {inertia!r}")
            return {
                "phase": phase, "features": features, "n": n, "sums": sums,
                "counts": counts.astype(np.int64), "inertia": float(inertia),
            }
        raise ValueError(f"phase must be 'init' or 'update', got {phase!r}")

    def off_board(
        self, partials: Mapping[str, Any], params: Mapping[str, Any], state: Any
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        p = parse_params(params)
        loaded = []
        for vehicle in sorted(partials):  # arrival order must not matter
            with malformed(self.name, vehicle):
                loaded.append(self._load(partials[vehicle]))
        current = _state_centroids(state)
        if len({tuple(x["features"]) for x in loaded}) > 1:
            raise MethodError("kmeans: vehicles built their points from different features; check the windows' signals")
        if loaded:
            features = loaded[0]["features"]
        elif current is not None:
            features = current[1]
        else:
            features = p.features or []
        phases = {x["phase"] for x in loaded}
        if len(phases) > 1:
            raise MethodError("kmeans: some vehicles initialised while others updated; they were sent different states")
        n = sum(x["n"] for x in loaded)

        old = current[0] if current is not None else p.init
        if phases == {"init"} or (not loaded and old is None):
            union = np.concatenate([x["candidates"] for x in loaded] or [np.empty((0, len(features)))])
            centroids = farthest_first(union, p.k)
            fleet = {
                "phase": "init", "features": features, "centroids": centroids.tolist(),
                "counts": None, "inertia": None, "shift": None, "n": n,
            }
            # Nobody had a point: try again next iteration rather than invent centroids.
            return fleet, ({"centroids": centroids.tolist(), "features": features} if len(centroids) else None)

        if old is None:
            raise MethodError(
                "kmeans: vehicles sent cluster updates, but no centroids were known (no state, no 'init')"
            )
        sums = np.zeros_like(old)
        counts = np.zeros(len(old), dtype=np.int64)
        for x in loaded:
            if x["sums"].shape != old.shape:
                raise MethodError(
                    f"kmeans: a vehicle sent sums of shape {x['sums'].shape} for centroids of shape {old.shape}"
                )
            sums += x["sums"]
            counts += x["counts"]
        new = old.copy()
        filled = counts > 0
        new[filled] = sums[filled] / counts[filled, None]  # an empty cluster keeps its place
        fleet = {
            "phase": "update",
            "features": features,
            "centroids": new.tolist(),
            "counts": counts.tolist(),
            # of the centroids the vehicles were sent, i.e. before this update
            "inertia": math.fsum(x["inertia"] for x in loaded),
            "shift": float(np.max(np.sqrt(_sqdist_to(new, old)))) if len(old) else 0.0,
            "n": n,
        }
        return fleet, {"centroids": new.tolist(), "features": features}

    def summarize(self, partial: Any) -> dict[str, Any]:
        with malformed(self.name):
            x = self._load(partial)
        if x["phase"] == "init":
            return {"phase": "init", "features": x["features"], "candidates": x["candidates"].tolist(), "n": x["n"]}
        return {
            "phase": "update",
            "features": x["features"],
            "centroids": [
                (s / c).tolist() if c else None for s, c in zip(x["sums"], x["counts"].tolist(), strict=True)
            ],
            "counts": x["counts"].tolist(),
            "inertia": x["inertia"],
            "n": x["n"],
        }
