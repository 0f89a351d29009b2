"""Iteration reports as tidy rows: one number per row, with what it means.

Analysts load results into pandas, a spreadsheet or a database; nested JSON (method,
then signal, then a histogram's bins) makes each of them write glue code. Every row
here says which assignment, iteration, vehicle (or the fleet), signal, method and
key a value belongs to, its unit (from the vehicles' DBC), the window it was
computed on in signal time, how many samples that window held and which code
version computed it. `to_pandas()`, CSV, Parquet and `oodida results --format json`
all carry exactly these columns, so what one tool shows another can check.

Pure Python: no pandas needed to build the rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

from oodida.client.values import BUILTIN_METHODS, plain
from oodida.wire.messages import IterationReport

# the tidy columns, in order; every row has every one (None where it does not apply)
COLUMNS: tuple[str, ...] = (
    "assignment",
    "iteration",
    "status",  # of the iteration: complete, quorum, partial, failed, cancelled
    "scope",  # "vehicle" or "fleet"
    "vehicle",  # None on fleet rows
    "signal",  # None where a value spans signals (k-means, a module's own values)
    "method",  # the built-in method, or "module" for an analyst's module
    "key",  # where in the method's value: "" for a plain number, "0.5" (a quantile), "counts[3]", "centroids[1][0]"
    "value",  # the number (float), None when the value is text, missing or not finite
    "text",  # a value that is not a number (k-means feature names, a module's strings, "nan", "inf")
    "unit",  # the value's unit (from the DBC; "km/h²" for a variance), None when it has none
    "window_start",  # signal time (epoch seconds) of the window's first sample
    "window_end",  # ... and of its last
    "samples",  # samples of `signal` in the window (fleet rows: summed over the counted vehicles)
    "code_version",  # the on-board code that computed it ("builtin:…" or a module's hash)
    "off_board_version",  # fleet rows of a module assignment: the off-board module's hash
    "ok",  # the vehicle answered with a value (fleet rows: the iteration produced one)
    "error",  # the vehicle's error, when not ok
    "late",  # answered after its iteration closed: stored, not aggregated
    "set_aside",  # ran another code version than the majority: stored, not aggregated
    "started",  # epoch seconds the iteration opened
    "closed",  # ... and closed
)

FLEET = "fleet"
_SIGNALWISE_EXCEPT = {"kmeans"}  # built-ins whose value is not {signal: value}
_INDEX = re.compile(r"\[(\d+)\]")


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(key, scalar) pairs of a nested value: dict keys joined with ".", list items
    as "[i]"; a scalar at the top has key ""."""
    if isinstance(value, dict):
        if not value:
            return
        for k, v in value.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _number(x: Any) -> tuple[float | None, str | None]:
    """The `value` and `text` columns of one scalar."""
    if x is None:
        return None, None
    if isinstance(x, bool):
        return float(x), None
    if isinstance(x, (int, float)):
        # non-finite numbers go to `text`: JSON has no spelling for them, and a NaN in
        # `value` could not be told from "no value"
        return (float(x), None) if math.isfinite(x) else (None, str(float(x)))
    return None, str(x)  # text, including "nan"/"inf" as plain() spells non-finite floats


def unit_of(method: str, key: str, unit: str | None, feature_units: list[str | None] | None = None) -> str | None:
    """The unit of one value of a built-in method, given its signal's unit: a count has
    none, a variance the unit squared, a histogram's edges the signal's and its counts
    none, a k-means centroid's coordinate that of its feature."""
    if method == "kmeans":
        m = _INDEX.findall(key)
        if key.startswith("centroids") and len(m) == 2 and feature_units is not None:
            j = int(m[1])
            return feature_units[j] if j < len(feature_units) else None
        return None
    if unit is None or method in ("count", "module"):
        return None
    if method == "variance":
        return f"({unit})²" if "/" in unit or " " in unit else f"{unit}²"
    if method == "histogram":
        return unit if key.startswith("edges") else None
    if method == "last":
        return "s" if key == "t" else unit
    return unit  # min, max, mean, std, quantiles


def _is_builtin(value: Any, builtins: frozenset[str]) -> bool:
    return isinstance(value, dict) and bool(value) and set(value) <= builtins


def _builtins() -> frozenset[str]:
    return BUILTIN_METHODS


def report_rows(report: IterationReport) -> list[dict[str, Any]]:
    """Every vehicle's values, then the fleet's, of one closed iteration."""
    builtins = _builtins()
    units: dict[str, str] = {}
    for r in report.vehicles.values():
        for signal, unit in r.units.items():
            units.setdefault(signal, unit)
    base = {
        "assignment": report.assignment,
        "iteration": report.iteration,
        "status": report.status,
        "started": report.started,
        "closed": report.closed,
    }
    rows: list[dict[str, Any]] = []
    counted: list[str] = []
    for vehicle, r in sorted(report.vehicles.items()):
        set_aside = vehicle in report.set_aside
        if r.ok and not r.late and not set_aside:
            counted.append(vehicle)
        common = _common(
            **base, scope="vehicle", vehicle=vehicle, window_start=r.t_start, window_end=r.t_end,
            code_version=r.code_hash, off_board_version=None, ok=r.ok, error=r.error, late=r.late,
            set_aside=set_aside,
        )
        if not r.ok:
            rows.append(_row(common, signal=None, method=None, key="", value=None, unit=None, samples=None))
            continue
        rows.extend(_value_rows(common, plain(r.value), builtins, units, r.samples))
    if report.fleet is not None:
        starts: list[float] = [t for v in counted if (t := report.vehicles[v].t_start) is not None]
        ends: list[float] = [t for v in counted if (t := report.vehicles[v].t_end) is not None]
        samples: dict[str, int] = {}
        for v in counted:
            for signal, n in report.vehicles[v].samples.items():
                samples[signal] = samples.get(signal, 0) + n
        common = _common(
            **base, scope=FLEET, vehicle=None, window_start=min(starts) if starts else None,
            window_end=max(ends) if ends else None, code_version=report.code_hash,
            off_board_version=report.off_board_hash, ok=report.status != "failed", error=None, late=False,
            set_aside=False,
        )
        rows.extend(_value_rows(common, plain(report.fleet), builtins, units, samples))
    return rows


def _row(common: dict[str, Any], *, signal: str | None, method: str | None, key: str, value: Any,
         unit: str | None, samples: int | None) -> dict[str, Any]:
    number, text = _number(value)
    row = common.copy()  # all COLUMNS already, in order (see _common): update keeps the order
    row.update(signal=signal, method=method, key=key, value=number, text=text, unit=unit, samples=samples)
    return row


_TEMPLATE = dict.fromkeys(COLUMNS)


def _common(**fields: Any) -> dict[str, Any]:
    row = _TEMPLATE.copy()
    row.update(fields)
    return row


def _value_rows(
    common: dict[str, Any], value: Any, builtins: frozenset[str], units: dict[str, str], samples: dict[str, int]
) -> Iterator[dict[str, Any]]:
    if not _is_builtin(value, builtins):
        # an analyst's module: its own shape; a first-level key naming a signal is that signal
        if isinstance(value, dict):
            for first, inner in value.items():
                signal = first if first in samples else None
                prefix = "" if signal is not None else first
                for key, x in flatten(inner, prefix):
                    yield _row(common, signal=signal, method="module", key=key, value=x, unit=None,
                               samples=samples.get(signal) if signal else None)
        else:
            for key, x in flatten(value):
                yield _row(common, signal=None, method="module", key=key, value=x, unit=None, samples=None)
        return
    for method, per in value.items():
        if method in _SIGNALWISE_EXCEPT or not isinstance(per, dict):
            features = per.get("features") if isinstance(per, dict) else None
            feature_units = [units.get(f) for f in features] if isinstance(features, list) else None
            for key, x in flatten(per):
                yield _row(common, signal=None, method=method, key=key, value=x,
                           unit=unit_of(method, key, None, feature_units), samples=None)
            continue
        for signal, v in per.items():
            for key, x in flatten(v):
                yield _row(common, signal=signal, method=method, key=key, value=x,
                           unit=unit_of(method, key, units.get(signal)), samples=samples.get(signal))


def tidy(reports: Iterable[IterationReport]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for report in reports:
        rows.extend(report_rows(report))
    return rows


def same(a: Any, b: Any) -> bool:
    """Equal as values, NaN equal to NaN (for tests and for checking exports)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)
