"""What the pages show, computed from the plain data the source hands out.

No I/O here: the fleet tracker remembers what successive status replies said (when a
vehicle went offline, when a problem first appeared, frames per second), and the
assignment functions turn iteration reports and the version table into rows and
chart series. Tests and the benchmark can feed these directly.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from oodida.dashboard import charts

SCALAR_METHODS = ("mean", "min", "max", "std", "variance", "count", "last")
BUILTIN = frozenset({"count", "min", "max", "mean", "variance", "std", "quantiles", "histogram", "last", "kmeans"})


def clock(t: float | None) -> str:
    if t is None:
        return "—"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%H:%M:%S")


def ago(t: float | None, now: float) -> str:
    if t is None:
        return ""
    s = max(0, int(now - t))
    if s < 90:
        return f"{s} s"
    if s < 5400:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def number(v: Any) -> float | None:
    """A chartable number out of a method's value (`last` gives {"value": ...})."""
    if isinstance(v, dict) and "value" in v:
        v = v["value"]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


# --- the fleet ---------------------------------------------------------------------------


@dataclass
class VehicleRow:
    vehicle: str
    online: bool
    since: float | None  # connected at, or offline since (None: never seen online here)
    address: str = ""
    sources: list[dict[str, Any]] = field(default_factory=list)
    fps: float | None = None
    frames: int = 0
    unknown: int = 0
    malformed: int = 0
    signals: int = 0
    running: int = 0
    pending: int = 0
    dropped: int = 0
    outbox_error: str | None = None
    sandbox: dict[str, Any] | None = None
    problems: list[tuple[str, float]] = field(default_factory=list)  # (what, first seen)
    position: dict[str, float] | None = None  # the newest GPS fix reported (kept once offline)

    @property
    def newest_problem(self) -> float:
        return max((t for _, t in self.problems), default=-math.inf)


class FleetTracker:
    """Turns each status reply into the fleet table, remembering across replies."""

    def __init__(self) -> None:
        self._offline_since: dict[str, float | None] = {}
        self._frames: dict[str, tuple[float, int]] = {}
        self._fps: dict[str, float] = {}
        self._problem_since: dict[tuple[str, str], float] = {}
        self._seen_now: set[tuple[str, str]] = set()
        self._positions: dict[str, dict[str, float]] = {}  # the last fix each vehicle reported

    def update(self, status: dict[str, Any], now: float | None = None) -> list[VehicleRow]:
        now = time.time() if now is None else now
        rows: dict[str, VehicleRow] = {}
        for info in status["vehicles"]:
            v = info["vehicle"]
            s = info.get("status") or {}
            row = VehicleRow(vehicle=v, online=True, since=info["connected_at"], address=info["address"])
            if s:
                row.sources = s.get("sources", [])
                row.frames = s.get("frames", 0)
                row.unknown = s.get("unknown_frames", 0)
                row.malformed = s.get("malformed_frames", 0)
                row.signals = len(s.get("signals", []))
                row.running = s.get("running", 0)
                row.pending = s.get("pending_results", 0)
                row.dropped = s.get("outbox_dropped", 0)
                row.outbox_error = s.get("outbox_error")
                row.sandbox = s.get("sandbox")
                if s.get("position"):
                    self._positions[v] = s["position"]
                last = self._frames.get(v)
                if last is not None and now > last[0] and row.frames >= last[1]:
                    if row.frames != last[1] or now - last[0] > 5:
                        self._fps[v] = (row.frames - last[1]) / (now - last[0])
                        self._frames[v] = (now, row.frames)
                else:
                    self._frames[v] = (now, row.frames)
                row.fps = self._fps.get(v)
            row.position = self._positions.get(v)
            rows[v] = row
            self._offline_since.pop(v, None)
        known = set(self._offline_since) | {v for a in status["assignments"] for v in a["vehicles"]}
        for v in known - set(rows):
            if v not in self._offline_since:
                # seen online before (tracked by _frames) means it just went; else unknown since when
                self._offline_since[v] = now if v in self._frames else None
            rows[v] = VehicleRow(vehicle=v, online=False, since=self._offline_since[v], position=self._positions.get(v))
            self._frames.pop(v, None)
            self._fps.pop(v, None)
        self._seen_now = set()
        for row in rows.values():
            row.problems = self._problems(row, now)
        for key in list(self._problem_since):  # problems gone are forgotten: a new one is new
            if key not in self._seen_now:
                del self._problem_since[key]
        return sorted(rows.values(), key=lambda r: (-r.newest_problem if r.problems else math.inf, r.vehicle))

    def _problems(self, row: VehicleRow, now: float) -> list[tuple[str, float]]:
        """What is wrong with this vehicle, each with when it was first seen (a
        count that grows is the same problem, seen since it first appeared)."""
        found: list[tuple[str, str]] = []
        if not row.online:
            found.append(("offline", "offline"))
        for src in row.sources:
            if src.get("state") == "failed":
                found.append((f"source {src.get('name')}",
                              f"source {src.get('name')} failed: {src.get('error') or 'no reason given'}"))
        if row.outbox_error:
            found.append(("outbox error", f"outbox: {row.outbox_error}"))
        if row.dropped:
            found.append(("dropped", f"outbox dropped {row.dropped} result(s)"))
        if row.sandbox and row.sandbox.get("restarts"):
            found.append(("restarts", f"sandbox restarted {row.sandbox['restarts']} time(s)"))
        if row.malformed:
            found.append(("malformed", f"{row.malformed} malformed frame(s)"))
        out = []
        for kind, what in found:
            first = row.since if kind == "offline" and row.since else now
            self._seen_now.add((row.vehicle, kind))
            out.append((what, self._problem_since.setdefault((row.vehicle, kind), first)))
        return out


# --- assignments ---------------------------------------------------------------------------


def submitter(versions: list[dict[str, Any]]) -> str | None:
    for v in versions:
        if v.get("kind") == "submit":
            return str(v.get("by"))
    return None


def versions_in_force(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in versions if v.get("current")]


def takeovers(versions: list[dict[str, Any]], reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each version with the iteration at which it took over (the first it computed;
    for one that computed none yet, the next iteration to close)."""
    last = max((r["iteration"] for r in reports), default=0)
    out = []
    for v in sorted(versions, key=lambda v: v.get("at", 0)):
        served = v.get("iterations") or []
        first = min(served) if served else None
        out.append({**v, "took_over": first, "pending": first is None and v.get("kind") != "submit", "next": last + 1})
    return out


def markers(versions: list[dict[str, Any]], reports: list[dict[str, Any]]) -> list[charts.Marker]:
    """Deploys and rollbacks on the iteration axis: just before the iteration at which
    the version took over (still pending: half-way past the newest iteration)."""
    out: list[charts.Marker] = []
    for v in takeovers(versions, reports):
        if v.get("kind") not in ("deploy", "rollback"):
            continue
        x = (v["took_over"] - 0.5) if v["took_over"] is not None else (v["next"] - 0.5)
        side = "on board" if v.get("side") == "on_board" else "off board"
        out.append((x, f"{v['kind']} {str(v.get('code_hash', ''))[:8]} ({side})", str(v["kind"])))
    return out


def _aggregated(report: dict[str, Any]) -> dict[str, Any]:
    """The vehicles whose values the fleet result was made of."""
    aside = report.get("set_aside") or {}
    return {
        v: r.get("value") for v, r in report["vehicles"].items() if r.get("ok") and v not in aside and not r.get("late")
    }


def is_builtin(reports: list[dict[str, Any]]) -> bool:
    for r in reports:
        fleet = r.get("fleet")
        if isinstance(fleet, dict) and fleet:
            return set(fleet) <= BUILTIN
    return False


def assignment_charts(reports: list[dict[str, Any]], versions: list[dict[str, Any]]) -> list[Markup]:
    reports = sorted(reports, key=lambda r: r["iteration"])
    marks = markers(versions, reports)
    if not reports:
        return [charts.series_chart("waiting for the first iteration", lines=[], markers=marks)]
    if is_builtin(reports):
        return _builtin_charts(reports, marks)
    return _module_charts(reports, marks)


def _signals(reports: list[dict[str, Any]], method: str) -> list[str]:
    out: list[str] = []
    for r in reports:
        fleet = r.get("fleet") or {}
        for s in (fleet.get(method) or {}) if isinstance(fleet.get(method), dict) else {}:
            if s not in out:
                out.append(s)
    return out


def units(reports: list[dict[str, Any]]) -> dict[str, str]:
    """Each signal's unit as the vehicles' reports give it (from the DBC), where they do."""
    out: dict[str, str] = {}
    for r in reports[-1:]:
        for answer in r["vehicles"].values():
            for signal, unit in (answer.get("units") or {}).items():
                if unit:
                    out.setdefault(signal, unit)
    return out


def _builtin_charts(reports: list[dict[str, Any]], marks: list[charts.Marker]) -> list[Markup]:
    out: list[Markup] = []
    unit = units(reports)
    methods = [m for m in SCALAR_METHODS if any(m in (r.get("fleet") or {}) for r in reports)]
    for method in methods:
        for signal in _signals(reports, method):
            line, band = [], []
            for r in reports:
                x = float(r["iteration"])
                y = number(((r.get("fleet") or {}).get(method) or {}).get(signal))
                if y is not None:
                    line.append((x, y))
                each = [number(((val or {}).get(method) or {}).get(signal)) for val in _aggregated(r).values()
                        if isinstance(val, dict)]
                per = [p for p in each if p is not None]
                if per:
                    band.append((x, min(per), max(per)))
            out.append(charts.series_chart(
                f"{method} of {signal}", lines=[("fleet", line)], bands=[("per-vehicle spread", band)], markers=marks,
                unit="" if method == "count" else unit.get(signal, ""),
            ))
    for signal in _signals(reports, "quantiles"):
        qs: dict[str, list[tuple[float, float]]] = {}
        for r in reports:
            for q, v in (((r.get("fleet") or {}).get("quantiles") or {}).get(signal) or {}).items():
                y = number(v)
                if y is not None:
                    qs.setdefault(str(q), []).append((float(r["iteration"]), y))
        keys = sorted(qs, key=lambda k: float(k))
        bands = []
        for i in range(len(keys) // 2):
            lo, hi = qs[keys[i]], dict(qs[keys[-1 - i]])
            bands.append((f"q{keys[i]}–q{keys[-1 - i]}", [(x, y, hi[x]) for x, y in lo if x in hi]))
        lines = [(f"q{keys[len(keys) // 2]}", qs[keys[len(keys) // 2]])] if len(keys) % 2 else []
        out.append(charts.series_chart(f"quantiles of {signal}", lines=lines, bands=bands, markers=marks,
                                       unit=unit.get(signal, "")))
    latest = reports[-1]
    for signal, h in sorted(((latest.get("fleet") or {}).get("histogram") or {}).items()):
        if isinstance(h, dict):
            out.append(charts.histogram_chart(
                f"histogram of {signal}, iteration {latest['iteration']}", h.get("edges", []), h.get("counts", []),
                below=h.get("below", 0) or 0, above=h.get("above", 0) or 0,
                unit=f"{signal} ({unit[signal]})" if signal in unit else signal,
            ))
    history = []
    features: list[str] = []
    for r in reports:
        km = (r.get("fleet") or {}).get("kmeans")
        if isinstance(km, dict) and km.get("centroids"):
            history.append((r["iteration"], km["centroids"]))
            features = km.get("features") or features
    if history:
        out.append(charts.centroid_chart("k-means centroids over iterations", history, features=features))
    return out


def _module_charts(reports: list[dict[str, Any]], marks: list[charts.Marker]) -> list[Markup]:
    """An analyst's module: each numeric key of the fleet result over iterations, with
    the spread of the vehicles' values of the same key where they have one."""
    keys: list[str] = []
    for r in reports:
        fleet = r.get("fleet")
        if isinstance(fleet, dict):
            keys += [k for k, v in fleet.items() if number(v) is not None and k not in keys]
    if not keys and any(number(r.get("fleet")) is not None for r in reports):
        keys = [""]
    out = []
    for key in keys:
        line, band = [], []
        for r in reports:
            fleet = r.get("fleet")
            y = number(fleet.get(key) if isinstance(fleet, dict) else fleet)
            if y is not None:
                line.append((float(r["iteration"]), y))
            each = [number(val.get(key)) for val in _aggregated(r).values() if isinstance(val, dict)]
            per = [p for p in each if p is not None]
            if per:
                band.append((float(r["iteration"]), min(per), max(per)))
        out.append(charts.series_chart(key or "fleet value", lines=[("fleet", line)],
                                       bands=[("per-vehicle spread", band)] if band else [], markers=marks))
    if not out:
        out.append(charts.series_chart("no numeric fleet value to chart", lines=[], markers=marks))
    return out


def _flat(value: Any, prefix: str = "") -> list[str]:
    """`method signal=value` pairs with short numbers; long lists are counted, not listed."""
    if isinstance(value, dict):
        if "edges" in value and "counts" in value:
            return [f"{prefix}: {len(value['counts'])} bins"]
        if set(value) == {"t", "value"}:
            return _flat(value["value"], prefix)
        return [p for k, v in value.items() for p in _flat(v, f"{prefix} {k}".strip())]
    if isinstance(value, list):
        if len(value) > 4 or any(isinstance(v, (list, dict)) for v in value):
            return [f"{prefix}: {len(value)} items"]
        return [f"{prefix}=[{', '.join(_short(v) for v in value)}]"]
    return [f"{prefix}={_short(value)}" if prefix else _short(value)]


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else json.dumps(v, default=str)


def _summary(value: Any, limit: int = 200) -> str:
    text = " · ".join(_flat(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def vehicle_rows(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The per-vehicle table of one iteration: answered, late, failed, set aside
    (another version) and missing, each with why."""
    if report is None:
        return []
    aside = report.get("set_aside") or {}
    rows = []
    for v, r in sorted(report["vehicles"].items()):
        if v in aside:
            state, why = "set aside", f"ran another version ({str(aside[v])[:12]}) than the majority"
        elif not r.get("ok"):
            state, why = "error", r.get("error") or "no reason given"
        elif r.get("late"):
            state, why = "late", "answered after the iteration closed: stored, not aggregated"
        else:
            state, why = "ok", ""
        rows.append({
            "vehicle": v, "state": state, "why": why, "samples": sum((r.get("samples") or {}).values()),
            "code": str(r.get("code_hash", ""))[:12], "flags": "; ".join(r.get("flags") or [])[:200],
            "value": _summary(r.get("value")) if r.get("ok") else "",
        })
    for v in sorted(report.get("missing") or []):
        rows.append({"vehicle": v, "state": "missing", "why": "no answer before the iteration closed",
                     "samples": 0, "code": "", "flags": "", "value": ""})
    order = {"missing": 0, "error": 1, "set aside": 2, "late": 3, "ok": 4}
    return sorted(rows, key=lambda r: (order[r["state"]], r["vehicle"]))
