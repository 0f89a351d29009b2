"""Iteration reports as text tables for people, and as JSON for scripts.

Rows are vehicles then the fleet, one block per signal, one column per method, so an
analyst sees at a glance how each vehicle compares with the fleet. Histograms are
drawn as a line of bars; `--json` has the exact numbers.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from oodida.analytics.arrays import to_json_ready
from oodida.core.text import inert
from oodida.wire.messages import IterationReport, StatusReply

BARS = " ▁▂▃▄▅▆▇█"


plain = to_json_ready


def report_json(report: IterationReport) -> dict[str, Any]:
    return {
        "assignment": report.assignment,
        "iteration": report.iteration,
        "iterations": report.iterations,
        "status": report.status,
        "reason": report.reason,
        "started": report.started,
        "closed": report.closed,
        "missing": report.missing,
        "vehicles": {
            v: {
                "ok": r.ok,
                "value": plain(r.value),
                "error": r.error,
                "samples": r.samples,
                "code_hash": r.code_hash,
                "late": r.late,
                "flags": r.flags,
            }
            for v, r in sorted(report.vehicles.items())
        },
        "fleet": plain(report.fleet),
        "code_hash": report.code_hash,
        "off_board_hash": report.off_board_hash,
        "set_aside": report.set_aside,
    }


def _num(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
            return f"{x:.3e}"
        return f"{x:.3f}"
    return str(x)


def sparkline(counts: list[int]) -> str:
    top = max(counts, default=0)
    if top <= 0:
        return "·" * len(counts)
    return "".join(BARS[0] if c == 0 else BARS[max(1, math.ceil(c / top * (len(BARS) - 1)))] for c in counts)


def _cell(method: str, value: Any) -> str:
    if method == "histogram" and isinstance(value, dict):
        counts = [int(c) for c in value.get("counts", [])]
        extra = ""
        if value.get("below") or value.get("above"):
            extra = f" ({value.get('below', 0)}<,>{value.get('above', 0)})"
        return sparkline(counts) + extra
    if method == "quantiles" and isinstance(value, dict):
        return " ".join(f"{k}={_num(v)}" for k, v in value.items())
    if method == "last" and isinstance(value, dict):
        return _num(value.get("value"))
    return _num(value)


def _title(method: str, signal: str, rows: dict[str, Any]) -> str:
    """Column title; a histogram's says its range and bin count."""
    if method == "histogram":
        for value in rows.values():
            h = (value.get(method) or {}).get(signal)
            if isinstance(h, dict) and h.get("edges"):
                edges = h["edges"]
                return f"histogram {edges[0]:g}…{edges[-1]:g} ({len(edges) - 1} bins)"
    return method


def _per_signal(value: Any) -> bool:
    """Built-in results other than k-means are {signal: value}."""
    return isinstance(value, dict) and "centroids" not in value and "phase" not in value


def render_report(report: IterationReport, methods: list[str] | None = None) -> str:
    total = report.iterations or "∞"
    took = report.closed - report.started
    lines = [
        f"── assignment {report.assignment} · iteration {report.iteration} of {total} · "
        f"{report.status} · {took:.1f} s ── {report.reason or ''}".rstrip()
    ]
    version = _version_line(report)
    if version:
        lines.append(version)
    fleet = plain(report.fleet)
    rows: dict[str, Any] = {
        v: plain(r.value) for v, r in sorted(report.vehicles.items()) if r.ok and v not in report.set_aside
    }
    if fleet is not None:
        rows["fleet"] = fleet
    sample = next(iter(rows.values()), None)
    if methods == [] or (methods is None and not _looks_builtin(sample)):
        lines.extend(_render_module_values(rows))  # an analyst's module: its own shapes
        methods = []
    methods = methods if methods is not None else (list(sample) if isinstance(sample, dict) else [])
    tabular = [m for m in methods if m != "kmeans" and isinstance(sample, dict) and _per_signal(sample.get(m))]
    if tabular and isinstance(sample, dict):  # tabular methods are keys of a dict sample
        signals: list[str] = []
        for m in tabular:
            for s in sample[m]:
                if s not in signals:
                    signals.append(s)
        width = max(len(v) for v in rows) + 2
        for signal in signals:
            cells = {
                who: [_cell(m, (value.get(m) or {}).get(signal)) for m in tabular] for who, value in rows.items()
            }
            titles = [_title(m, signal, rows) for m in tabular]
            widths = [max(len(t), *(len(c[i]) for c in cells.values())) for i, t in enumerate(titles)]
            lines.append(signal)
            align = ["<" if m == "histogram" else ">" for m in tabular]
            head = "  ".join(f"{t:{a}{w}}" for t, a, w in zip(titles, align, widths, strict=True))
            lines.append(f"  {'':<{width}}" + head)
            for who, row in cells.items():
                cols = "  ".join(f"{c:{a}{w}}" for c, a, w in zip(row, align, widths, strict=True))
                lines.append(f"  {who:<{width}}" + cols)
    for m in methods:
        if m in tabular:
            continue
        value = fleet.get(m) if isinstance(fleet, dict) else None
        if m == "kmeans" and isinstance(value, dict):
            lines.extend(_render_kmeans(value))
        elif value is not None:
            lines.append(f"{m}: {value}")
    for who, code_hash in sorted(report.set_aside.items()):
        r = report.vehicles.get(who)
        shown = f": {_module_value(plain(r.value))}" if r is not None and r.ok else ""
        lines.append(f"  {who}: set aside, ran another version ({code_hash[:12]}){shown}")
    for who, r in sorted(report.vehicles.items()):
        if who in report.set_aside:
            continue
        if r.flags:
            lines.append(f"  {who}: flagged: {'; '.join(r.flags[:5])}")
        if not r.ok:
            lines.append(f"  {who}: error: {r.error}")
        elif r.late:
            lines.append(f"  {who}: answered after the iteration closed (stored, not aggregated)")
    if report.missing:
        lines.append(f"  no answer from: {', '.join(report.missing)}")
    return "\n".join(inert(line) for line in lines)  # a module's keys, values and messages: no control characters


def _version_line(report: IterationReport) -> str:
    """Which code computed this iteration: the analyst's module versions (short hashes)."""
    parts = []
    if report.code_hash and not report.code_hash.startswith("builtin"):
        parts.append(f"on board {report.code_hash[:12]}")
    if report.off_board_hash:
        parts.append(f"off board {report.off_board_hash[:12]}")
    return "  version: " + ", ".join(parts) if parts else ""


def _module_value(value: Any) -> str:
    if isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values()):
        return "  ".join(f"{k}={_num(v)}" for k, v in value.items())
    return str(value)


def _looks_builtin(sample: Any) -> bool:
    from oodida.analytics.registry import method_names

    return isinstance(sample, dict) and bool(sample) and set(sample) <= set(method_names())


def _render_module_values(rows: dict[str, Any]) -> list[str]:
    """One line per vehicle (and the fleet): flat dicts as key=value, else the value."""
    width = max((len(who) for who in rows), default=5) + 2
    out = []
    for who, value in rows.items():
        out.append(f"  {who:<{width}}{_module_value(value)}")
    return out


def _render_kmeans(value: dict[str, Any]) -> list[str]:
    lines = []
    features = value.get("features") or []
    head = "k-means" + (" (initialised)" if value.get("phase") == "init" else "")
    if value.get("inertia") is not None:
        head += f" · inertia {_num(value.get('inertia'))}"
    lines.append(head)
    centroids = value.get("centroids") or []
    counts = value.get("counts") or [None] * len(centroids)
    lines.append("  " + "  ".join(f"{f:>14}" for f in ["cluster", *features, "points"]))
    for i, (c, n) in enumerate(zip(centroids, counts, strict=False)):
        lines.append("  " + "  ".join(f"{x:>14}" for x in [str(i), *(_num(float(x)) for x in c), _num(n)]))
    return lines


def _sandbox(info: Any) -> str:
    if info is None:
        return "not started"
    return (f"pid {info.pid or '—'} ({info.started} started, {info.restarts} replaced, {info.recycles} recycled,"
            f" {info.modules} versions)")


def render_status(status: StatusReply) -> str:
    lines = [f"vehicles connected: {len(status.vehicles)}"]
    for v in status.vehicles:
        s = v.status
        since = dt.datetime.fromtimestamp(v.connected_at).strftime("%H:%M:%S")
        if s is None:
            lines.append(f"  {v.vehicle:<16} since {since}  (no status yet)")
            continue
        sources = ", ".join(f"{src.state}" + (f" ({src.error})" if src.error else "") for src in s.sources)
        lines.append(
            f"  {v.vehicle:<16} since {since}  frames {s.frames}  unknown {s.unknown_frames}  "
            f"malformed {s.malformed_frames}  signals {len(s.signals)}  tasks {s.running}  "
            f"unsent {s.pending_results}  sources: {sources}"
        )
        odd = {"error frames": s.error_frames, "remote frames": s.remote_frames,
               "unreadable log lines": s.unreadable_lines, "late samples dropped": s.late_samples}
        if any(odd.values()):
            lines.append(f"  {'':<16} " + "  ".join(f"{name} {n}" for name, n in odd.items() if n))
        if s.outbox_dropped or s.outbox_error:
            lines.append(
                f"  {'':<16} outbox: {s.outbox_dropped} result(s) dropped over its limits"
                + (f"; {s.outbox_error}" if s.outbox_error else "")
            )
        if s.modules or s.sandbox is not None:
            runs = ", ".join(f"assignment {a}: {h[:12]}" for a, h in sorted(s.modules.items())) or "no module"
            lines.append(f"  {'':<16} pid {s.pid}  sandbox {_sandbox(s.sandbox)}  runs {runs}")
    if status.pid:
        lines.append(f"server pid {status.pid}  sandbox {_sandbox(status.sandbox)}")
    lines.append(f"assignments: {len(status.assignments)}")
    for a in status.assignments:
        total = a.iterations or "∞"
        name = f" {a.name!r}" if a.name else ""
        reason = f"  ({a.reason})" if a.reason else ""
        bad = "".join(f", {n} {what}" for n, what in ((a.partial, "partial"), (a.failed, "failed")) if n)
        lines.append(
            f"  {a.assignment:>5}{name}  {a.state:<11} {a.completed}/{total} iterations{bad}  "
            f"{len(a.vehicles)} vehicles{reason}"
        )
    return "\n".join(inert(line) for line in lines)
