"""Charts as SVG text, drawn on the server: no JavaScript library to vendor, nothing
fetched from outside, and a fragment that the page swaps in whole when an iteration
closes. Colours and strokes are SVG attributes (the page's CSP allows no inline
style), sized in the viewBox so a chart scales from a laptop to a projector.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

W, H = 640, 320
LEFT, RIGHT, TOP, BOTTOM = 78, 20, 76, 46
INK = "#111111"
GRID = "#c8c8c8"
LINE = "#0b3d91"
BAND = "#7fa7e0"
PALETTE = ["#0b3d91", "#b3261e", "#1b7f3b", "#7a3fb0", "#a15c00", "#00707a", "#5b5b5b", "#c2185b"]
MARK = {"deploy": "#c25400", "rollback": "#7a3fb0"}

Marker = tuple[float, str, str]  # x (iteration), label, kind ("deploy" or "rollback")


def _fmt(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    if abs(v) >= 1e5 or abs(v) < 1e-2:
        return f"{v:.2e}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    out = []
    v = first
    while v <= hi + step * 1e-9:
        out.append(round(v, 12))
        v += step
    return out


class _Frame:
    """Axes mapping data to the viewBox, with the y range padded a little."""

    def __init__(self, xs: Sequence[float], ys: Sequence[float], *, y_zero: bool = False) -> None:
        finite = [y for y in ys if math.isfinite(y)]
        self.x0, self.x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
        if self.x1 == self.x0:
            self.x0, self.x1 = self.x0 - 0.5, self.x1 + 0.5
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        if y_zero:
            lo = min(lo, 0.0)
        if hi == lo:
            lo, hi = lo - (abs(lo) * 0.1 or 1.0), hi + (abs(hi) * 0.1 or 1.0)
        pad = (hi - lo) * 0.06
        self.y0, self.y1 = (lo if y_zero and lo == 0 else lo - pad), hi + pad

    def x(self, v: float) -> float:
        return LEFT + (v - self.x0) / (self.x1 - self.x0) * (W - LEFT - RIGHT)

    def y(self, v: float) -> float:
        return H - BOTTOM - (v - self.y0) / (self.y1 - self.y0) * (H - TOP - BOTTOM)


def _svg(title: str, body: list[str], *, cls: str, data: str = "") -> Markup:
    return Markup(
        f'<svg class="chart {cls}" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" {data}>'
        f'<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>'
        f'<text x="{LEFT}" y="26" font-size="{20 if len(title) <= 40 else 16}" font-weight="bold" fill="{INK}">'
        f"{escape(title)}</text>"
        + "".join(body)
        + "</svg>"
    )


def _axes(f: _Frame, x_label: str, y_label: str, x_integer: bool = True) -> list[str]:
    out = []
    for t in _ticks(f.y0, f.y1):
        y = f.y(t)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}" stroke-width="1"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y + 5:.1f}" font-size="15" text-anchor="end" fill="{INK}">'
                   f"{_fmt(t)}</text>")
    xt = [t for t in _ticks(f.x0, f.x1, 8) if not x_integer or float(t).is_integer()]
    for t in xt:
        x = f.x(t)
        out.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 20}" font-size="15" text-anchor="middle" fill="{INK}">'
                   f"{_fmt(t)}</text>")
    out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{H - BOTTOM}" y2="{H - BOTTOM}" stroke="{INK}" '
               'stroke-width="1.5"/>')
    out.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{H - BOTTOM}" stroke="{INK}" stroke-width="1.5"/>')
    out.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 8}" font-size="15" text-anchor="middle" fill="{INK}">'
               f"{escape(x_label)}</text>")
    if y_label:
        out.append(f'<text x="8" y="48" font-size="15" fill="{INK}">{escape(y_label)}</text>')
    return out


def _markers(f: _Frame, markers: Sequence[Marker]) -> list[str]:
    out = []
    for x, label, kind in markers:
        if not f.x0 <= x <= f.x1:
            continue
        px = f.x(x)
        colour = MARK.get(kind, MARK["deploy"])
        anchor = "start" if px < (LEFT + W - RIGHT) / 2 else "end"
        out.append(
            f'<g class="marker marker-{escape(kind)}"><line x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{H - BOTTOM}" '
            f'stroke="{colour}" stroke-width="3" stroke-dasharray="8 5"/>'
            f'<text x="{px:.1f}" y="{TOP - 6}" font-size="14" font-weight="bold" text-anchor="{anchor}" '
            f'fill="{colour}">{escape(label)}</text></g>'
        )
    return out


def series_chart(
    title: str,
    *,
    lines: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    bands: Sequence[tuple[str, Sequence[tuple[float, float, float]]]] = (),
    markers: Sequence[Marker] = (),
    unit: str = "",
    x_label: str = "iteration",
) -> Markup:
    """Lines over iterations, each band a shaded spread (per-vehicle min to max, or
    a quantile range) behind them; deploys and rollbacks as dashed verticals."""
    xs = [p[0] for _, pts in lines for p in pts] + [p[0] for _, pts in bands for p in pts]
    xs += [m[0] for m in markers] if xs else []
    ys = [p[1] for _, pts in lines for p in pts] + [v for _, pts in bands for p in pts for v in p[1:]]
    if not xs:
        return _svg(title, [f'<text x="{W / 2}" y="{H / 2}" font-size="18" text-anchor="middle" fill="{INK}">'
                            "waiting for the first iteration</text>"], cls="series empty")
    f = _Frame(xs, ys)
    body = _axes(f, x_label, unit)
    opacities = [0.35, 0.55, 0.75]
    for i, (label, band) in enumerate(bands):
        spread = sorted(band)
        if not spread:
            continue
        upper = " ".join(f"{f.x(x):.1f},{f.y(hi):.1f}" for x, _, hi in spread)
        lower = " ".join(f"{f.x(x):.1f},{f.y(lo):.1f}" for x, lo, _ in reversed(spread))
        if len(spread) == 1:
            x, lo, hi = spread[0]
            body.append(f'<line class="band" x1="{f.x(x):.1f}" x2="{f.x(x):.1f}" y1="{f.y(lo):.1f}" y2="{f.y(hi):.1f}" '
                        f'stroke="{BAND}" stroke-width="14"><title>{escape(label)}</title></line>')
        else:
            body.append(f'<polygon class="band" points="{upper} {lower}" fill="{BAND}" '
                        f'fill-opacity="{opacities[i % 3]}"><title>{escape(label)}</title></polygon>')
    for i, (label, line) in enumerate(lines):
        pts = sorted(line)
        colour = PALETTE[i % len(PALETTE)]
        if len(pts) > 1:
            path = " ".join(f"{f.x(x):.1f},{f.y(y):.1f}" for x, y in pts)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="3.5"/>')
        for x, y in pts:
            body.append(f'<circle class="point" cx="{f.x(x):.1f}" cy="{f.y(y):.1f}" r="5" fill="{colour}">'
                        f"<title>{escape(label)} at {_fmt(x)}: {_fmt(y)}</title></circle>")
    body += _markers(f, markers)
    if len(lines) + len(bands) > 1:
        legend = [(label, PALETTE[i % len(PALETTE)], 1.0) for i, (label, _) in enumerate(lines)]
        legend += [(label, BAND, opacities[i % 3]) for i, (label, _) in enumerate(bands)]
        x = W - RIGHT
        for label, colour, alpha in reversed(legend[:4]):  # right-aligned, under the title
            x -= 8 * len(label) + 4
            body.append(f'<rect x="{x - 18}" y="{36}" width="14" height="14" fill="{colour}" fill-opacity="{alpha}"/>'
                        f'<text x="{x}" y="{48}" font-size="14" fill="{INK}">{escape(label)}</text>')
            x -= 30
    return _svg(title, body, cls="series", data=f'data-points="{max((len(p) for _, p in lines), default=0)}"')


def histogram_chart(
    title: str, edges: Sequence[float], counts: Sequence[float], *, below: float = 0, above: float = 0, unit: str = ""
) -> Markup:
    """Bars over the bin edges; values outside the edges are said, not drawn."""
    if len(edges) < 2 or len(counts) != len(edges) - 1:
        return _svg(title, [], cls="histogram empty")
    f = _Frame([edges[0], edges[-1]], [0.0, *counts], y_zero=True)
    body = _axes(f, unit or "value", "count", x_integer=False)
    for lo, hi, c in zip(edges, edges[1:], counts, strict=False):
        x0, x1, y = f.x(lo), f.x(hi), f.y(c)
        body.append(f'<rect class="bar" x="{x0 + 1:.1f}" y="{y:.1f}" width="{max(1.0, x1 - x0 - 2):.1f}" '
                    f'height="{H - BOTTOM - y:.1f}" fill="{LINE}">'
                    f"<title>{_fmt(lo)}…{_fmt(hi)}: {_fmt(c)}</title></rect>")
    if below or above:
        body.append(f'<text x="{W - RIGHT}" y="{TOP + 16}" font-size="15" text-anchor="end" fill="{INK}">'
                    f"{_fmt(below)} below, {_fmt(above)} above the range</text>")
    return _svg(title, body, cls="histogram")


def centroid_chart(
    title: str, history: Sequence[tuple[int, Sequence[Sequence[float]]]], *, features: Sequence[str] = ("x", "y")
) -> Markup:
    """k-means centroids in the first two features: each centroid's path over the
    iterations, the newest position drawn large."""
    pts = [(c[0], c[1] if len(c) > 1 else 0.0) for _, cs in history for c in cs if c]
    if not pts:
        return _svg(title, [], cls="centroids empty")
    fx = _Frame([p[0] for p in pts], [p[1] for p in pts])
    fx.x0, fx.x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    if fx.x1 == fx.x0:
        fx.x0, fx.x1 = fx.x0 - 1, fx.x1 + 1
    pad = (fx.x1 - fx.x0) * 0.06
    fx.x0, fx.x1 = fx.x0 - pad, fx.x1 + pad
    body = _axes(fx, features[0] if features else "x", features[1] if len(features) > 1 else "", x_integer=False)
    k = max(len(cs) for _, cs in history)
    for j in range(k):
        colour = PALETTE[j % len(PALETTE)]
        path = [(it, cs[j]) for it, cs in history if j < len(cs) and cs[j]]
        coords = [(fx.x(c[0]), fx.y(c[1] if len(c) > 1 else 0.0)) for _, c in path]
        if len(coords) > 1:
            body.append(f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in coords)}" fill="none" '
                        f'stroke="{colour}" stroke-width="2" stroke-dasharray="4 3"/>')
        for n, ((it, c), (x, y)) in enumerate(zip(path, coords, strict=True)):
            last = n == len(coords) - 1
            body.append(f'<circle class="centroid" cx="{x:.1f}" cy="{y:.1f}" r="{9 if last else 4}" fill="{colour}">'
                        f"<title>centroid {j + 1}, iteration {it}: ({', '.join(_fmt(v) for v in c)})</title></circle>")
    return _svg(title, body, cls="centroids")


def positions_chart(points: Sequence[tuple[str, float, float, bool]], title: str = "Last known positions") -> Markup:
    """Vehicles where their GPS last put them, (name, latitude, longitude, online), on
    plain axes in degrees: no map tiles, nothing fetched. Longitude is scaled by the
    cosine of the mean latitude, so distances look right where the fleet is."""
    if not points:
        return _svg(title, [], cls="positions empty")
    lats, lons = [p[1] for p in points], [p[2] for p in points]
    mid = math.radians((min(lats) + max(lats)) / 2)
    squeeze = max(math.cos(mid), 0.05)
    span = max(max(lats) - min(lats), (max(lons) - min(lons)) * squeeze, 0.002) * 1.15
    cy, cx = (min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2
    f = _Frame([0.0, 1.0], [0.0, 1.0])
    aspect = (W - LEFT - RIGHT) / (H - TOP - BOTTOM)  # the plot area is wider than tall
    f.y0, f.y1 = cy - span / 2, cy + span / 2
    f.x0, f.x1 = cx - span * aspect / squeeze / 2, cx + span * aspect / squeeze / 2
    body = _axes(f, "longitude (° east)", "latitude (° north)", x_integer=False)
    for name, lat, lon, online in sorted(points, key=lambda p: p[3]):  # online ones drawn last, on top
        x, y = f.x(lon), f.y(lat)
        colour = LINE if online else "#8a8a8a"
        anchor = "start" if x < (LEFT + W - RIGHT) / 2 else "end"
        dx = 10 if anchor == "start" else -10
        body.append(
            f'<g class="position{"" if online else " offline"}" data-vehicle="{escape(name)}">'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="{colour}"><title>{escape(name)}: '
            f"{lat:.5f}, {lon:.5f}{'' if online else ' (offline: last known)'}</title></circle>"
            f'<text x="{x + dx:.1f}" y="{y + 5:.1f}" font-size="15" text-anchor="{anchor}" fill="{INK}">'
            f"{escape(name)}</text></g>"
        )
    return _svg(title, body, cls="positions")
