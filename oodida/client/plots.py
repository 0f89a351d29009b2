"""Figures of an assignment's results, drawn from the tidy rows.

One panel per (signal, method):

- a number per vehicle (mean, min, max, std, variance, count, last): the fleet's
  value over iterations as a line, the vehicles' range as a band around it and each
  vehicle's value as a point;
- a histogram: the fleet's counts as bars, and beside them each vehicle's as
  grouped bars (of the last iteration, or the one asked for);
- quantiles: the fleet's quantiles over iterations as nested bands, the median (or
  the middle quantile) as a line;
- k-means: each centroid's position per iteration, joined by a line that shows how
  it moved, its last position marked;
- an analyst's module: its numeric fleet values over iterations, one line per key.

Built on `matplotlib.figure.Figure` (no pyplot, no GUI backend): it renders headless
(PNG through Agg) and shows inline in a notebook. Titles name the method, signal,
unit and assignment; axes say what they measure, in which unit.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from oodida.client.records import FLEET
from oodida.client.results import need
from oodida.core.errors import OodidaError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from oodida.client.results import Results

SCALAR_METHODS = ("mean", "min", "max", "std", "variance", "count", "last")
_INDEX = re.compile(r"\[(\d+)\]")


class NothingToPlot(OodidaError, ValueError):
    """The selection (signal, method, iteration) holds no plottable values; says what there is."""


def _label(signal: str | None, unit: str | None) -> str:
    name = signal or "value"
    return f"{name} [{unit}]" if unit else name


def _title(method: str, signal: str | None, unit: str | None, assignment: int, extra: str = "") -> str:
    what = f"{method} of {signal}" if signal else method
    if unit:
        what += f" ({unit})"
    return f"{what}{extra} · assignment {assignment}"


def panels(rows: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """The (method, signal) pairs to draw, in the order they first appear."""
    seen: dict[tuple[str, str | None], None] = {}
    for r in rows:
        if r["method"] is None or r["value"] is None and r["text"] is None:
            continue
        if r["method"] == "last" and r["key"] != "value":
            continue
        seen.setdefault((r["method"], r["signal"] if r["method"] != "module" else None), None)
    return list(seen)


def plot_results(
    results: Results, *, signal: str | None = None, method: str | None = None, iteration: int | None = None,
    width: float = 9.0, height: float = 3.6,
) -> Figure:
    """A figure with one panel per (signal, method) of `results` (or only those asked)."""
    need("matplotlib", "a plot")
    from matplotlib.figure import Figure

    rows = results.records()
    if signal is not None:
        rows = [r for r in rows if r["signal"] == signal or (r["method"] == "kmeans" and _has_feature(r, rows, signal))]
    if method is not None:
        rows = [r for r in rows if r["method"] == method]
    chosen = panels(rows)
    if not chosen:
        there = ", ".join(f"{m}/{s}" if s else m for m, s in panels(results.records())) or "nothing"
        raise NothingToPlot(
            f"assignment {results.assignment}: no values for"
            f"{' signal ' + signal if signal else ''}{' method ' + method if method else ''}; there is {there}"
        )
    fig = Figure(figsize=(width, height * len(chosen)), layout="constrained")
    grid = fig.add_gridspec(len(chosen), 2)
    for i, (m, s) in enumerate(chosen):
        selected = [r for r in rows if r["method"] == m and (m == "module" or r["signal"] == s)]
        if m == "histogram":
            _histogram(fig.add_subplot(grid[i, 0]), fig.add_subplot(grid[i, 1]), selected, s, results.assignment,
                       iteration)
        elif m == "quantiles":
            _quantiles(fig.add_subplot(grid[i, :]), selected, s, results.assignment)
        elif m == "kmeans":
            _kmeans(fig.add_subplot(grid[i, :]), selected, results.assignment)
        elif m == "module":
            _module(fig.add_subplot(grid[i, :]), selected, results.assignment)
        else:
            _scalar(fig.add_subplot(grid[i, :]), selected, m, s, results.assignment)
    fig.suptitle(f"assignment {results.assignment}: {len(results.reports)} iterations"
                 + (f", {results.state}" if results.state else ""))
    _show_inline()
    return fig


def _show_inline() -> None:
    """In a notebook, draw a returned Figure as a PNG: IPython registers that for
    figures only once pyplot is imported, and we never import pyplot (no GUI backend)."""
    from oodida.client.progress import in_notebook

    if not in_notebook():
        return
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats

        ip = get_ipython()
        formatter = ip.display_formatter.formatters["image/png"]
        from matplotlib.figure import Figure

        try:
            formatter.lookup_by_type(Figure)
        except KeyError:  # nothing draws figures yet
            select_figure_formats(ip, {"png"})  # type: ignore[no-untyped-call]  # IPython leaves it unannotated
    except Exception:  # an odd frontend: the figure is still returned, just not drawn
        return


def _has_feature(row: dict[str, Any], rows: list[dict[str, Any]], signal: str) -> bool:
    return any(r["method"] == "kmeans" and r["key"].startswith("features") and r["text"] == signal
               and r["iteration"] == row["iteration"] for r in rows)


def _unit(rows: list[dict[str, Any]], key: str | None = None) -> str | None:
    for r in rows:
        if r["unit"] and (key is None or r["key"] == key):
            return str(r["unit"])
    return None


def _scalar(ax: Axes, rows: list[dict[str, Any]], method: str, signal: str | None, assignment: int) -> None:
    key = "value" if method == "last" else ""
    rows = [r for r in rows if r["key"] == key and r["value"] is not None]
    unit = _unit(rows)
    fleet = sorted((r["iteration"], r["value"]) for r in rows if r["scope"] == FLEET)
    per_vehicle: dict[int, list[float]] = defaultdict(list)
    points_x, points_y = [], []
    for r in rows:
        if r["scope"] != FLEET and r["ok"] and not r["late"] and not r["set_aside"]:
            per_vehicle[r["iteration"]].append(r["value"])
            points_x.append(r["iteration"])
            points_y.append(r["value"])
    if per_vehicle:
        its = sorted(per_vehicle)
        ax.fill_between(its, [min(per_vehicle[i]) for i in its], [max(per_vehicle[i]) for i in its],
                        alpha=0.2, color="tab:blue", label="vehicles' range")
        ax.scatter(points_x, points_y, s=14, color="tab:gray", alpha=0.8, label="vehicles", zorder=2)
    if fleet:
        ax.plot([x for x, _ in fleet], [y for _, y in fleet], marker="o", color="tab:blue", label="fleet", zorder=3)
    ax.set_title(_title(method, signal, unit, assignment))
    ax.set_xlabel("iteration")
    ax.set_ylabel("samples" if method == "count" else f"{method} of {_label(signal, unit)}")
    _iteration_ticks(ax, sorted({x for x in points_x} | {x for x, _ in fleet}))
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)


def _iteration_ticks(ax: Axes, its: list[int]) -> None:
    if its and len(its) <= 20:
        ax.set_xticks(its)


def _indexed(rows: list[dict[str, Any]], name: str) -> list[float]:
    """counts[0], counts[1], … of one vehicle's (or the fleet's) rows, in order."""
    found = {}
    for r in rows:
        m = re.fullmatch(rf"{name}\[(\d+)\]", r["key"])
        if m and r["value"] is not None:
            found[int(m.group(1))] = r["value"]
    return [found[i] for i in sorted(found)]


def _histogram(ax_fleet: Axes, ax_vehicles: Axes, rows: list[dict[str, Any]], signal: str | None, assignment: int,
               iteration: int | None) -> None:
    shown = iteration if iteration is not None else max(r["iteration"] for r in rows)
    rows = [r for r in rows if r["iteration"] == shown]
    unit = _unit(rows, "edges[0]")
    xlabel = _label(signal, unit)
    fleet = [r for r in rows if r["scope"] == FLEET]
    edges = _indexed(fleet, "edges") or _indexed(rows, "edges")
    if not edges:
        raise NothingToPlot(f"assignment {assignment}: iteration {shown} has no histogram of {signal}")
    widths = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    if fleet:
        ax_fleet.bar(edges[:-1], _indexed(fleet, "counts"), width=widths, align="edge", color="tab:blue",
                     edgecolor="white", label="fleet")
    ax_fleet.set_title(_title("histogram", signal, unit, assignment, f", iteration {shown}, fleet"))
    ax_fleet.set_xlabel(xlabel)
    ax_fleet.set_ylabel("samples")
    ax_fleet.legend(loc="best", fontsize="small")
    vehicles = sorted({r["vehicle"] for r in rows if r["scope"] != FLEET and r["ok"]})
    for j, vehicle in enumerate(vehicles):
        mine = [r for r in rows if r["vehicle"] == vehicle]
        counts = _indexed(mine, "counts")
        if not counts:
            continue
        share = [w / max(len(vehicles), 1) for w in widths]
        ax_vehicles.bar([a + j * s for a, s in zip(edges[:-1], share, strict=True)], counts, width=share, align="edge",
                        label=vehicle)
    ax_vehicles.set_title(f"histogram of {signal}, iteration {shown}, per vehicle")
    ax_vehicles.set_xlabel(xlabel)
    ax_vehicles.set_ylabel("samples")
    if vehicles:
        ax_vehicles.legend(loc="best", fontsize="small", ncols=2)


def _qvalue(key: str) -> float:
    try:
        return float(key.lstrip("q"))
    except ValueError:
        return float("nan")


def _quantiles(ax: Axes, rows: list[dict[str, Any]], signal: str | None, assignment: int) -> None:
    fleet = [r for r in rows if r["scope"] == FLEET and r["value"] is not None]
    source = fleet or [r for r in rows if r["value"] is not None]
    unit = _unit(source)
    keys = sorted({r["key"] for r in source}, key=_qvalue)
    series = {k: sorted((r["iteration"], r["value"]) for r in source if r["key"] == k) for k in keys}
    who = "fleet" if fleet else "vehicles"
    for i in range(len(keys) // 2):
        low, high = series[keys[i]], series[keys[-1 - i]]
        its = [x for x, _ in low]
        ax.fill_between(its, [y for _, y in low], [y for _, y in high], alpha=0.15 + 0.15 * i, color="tab:orange",
                        label=f"{who} {keys[i]}–{keys[-1 - i]}")
    if len(keys) % 2:
        middle = series[keys[len(keys) // 2]]
        ax.plot([x for x, _ in middle], [y for _, y in middle], marker="o", color="tab:red",
                label=f"{who} {keys[len(keys) // 2]}")
    ax.set_title(_title("quantiles", signal, unit, assignment))
    ax.set_xlabel("iteration")
    ax.set_ylabel(_label(signal, unit))
    _iteration_ticks(ax, sorted({r["iteration"] for r in source}))
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)


def _kmeans(ax: Axes, rows: list[dict[str, Any]], assignment: int) -> None:
    fleet = [r for r in rows if r["scope"] == FLEET]
    features = [r["text"] for r in sorted((r for r in fleet if r["key"].startswith("features")),
                                          key=lambda r: (r["iteration"], r["key"]))]
    per_it: dict[int, dict[tuple[int, int], float]] = defaultdict(dict)
    units: dict[int, str | None] = {}
    for r in fleet:
        m = _INDEX.findall(r["key"])
        if r["key"].startswith("centroids") and len(m) == 2 and r["value"] is not None:
            per_it[r["iteration"]][(int(m[0]), int(m[1]))] = r["value"]
            units.setdefault(int(m[1]), r["unit"])
    if not per_it:
        raise NothingToPlot(f"assignment {assignment}: no k-means centroids yet (the first iteration initialises)")
    names = list(dict.fromkeys(features))
    its = sorted(per_it)
    k = 1 + max(c for it in per_it.values() for c, _ in it)
    dims = 1 + max(d for it in per_it.values() for _, d in it)
    for c in range(k):
        nan = float("nan")  # a centroid an iteration lacks: a gap in its track
        if dims >= 2:
            xs = [per_it[i].get((c, 0), nan) for i in its]
            ys = [per_it[i].get((c, 1), nan) for i in its]
        else:
            xs, ys = [float(i) for i in its], [per_it[i].get((c, 0), nan) for i in its]
        line = ax.plot(xs, ys, marker=".", alpha=0.7, label=f"centroid {c}")[0]
        ax.scatter([xs[-1]], [ys[-1]], s=80, color=line.get_color(), edgecolor="black", zorder=3)
    if dims >= 2:
        ax.set_xlabel(_label(names[0] if names else "feature 0", units.get(0)))
        ax.set_ylabel(_label(names[1] if len(names) > 1 else "feature 1", units.get(1)))
    else:
        ax.set_xlabel("iteration")
        ax.set_ylabel(_label(names[0] if names else "feature 0", units.get(0)))
    ax.set_title(f"k-means centroids over iterations {its[0]}–{its[-1]} (● last) · assignment {assignment}")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)


def _module(ax: Axes, rows: list[dict[str, Any]], assignment: int) -> None:
    fleet = [r for r in rows if r["scope"] == FLEET and r["value"] is not None]
    source = fleet or [r for r in rows if r["value"] is not None]
    keys = list(dict.fromkeys((r["signal"], r["key"]) for r in source))[:12]
    for signal, key in keys:
        points = sorted((r["iteration"], r["value"]) for r in source if (r["signal"], r["key"]) == (signal, key))
        name = ".".join(p for p in (signal, key) if p) or "value"
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name)
    ax.set_title(f"module values ({'fleet' if fleet else 'vehicles'}) · assignment {assignment}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("value")
    _iteration_ticks(ax, sorted({r["iteration"] for r in source}))
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
