"""`oodida results ID --format …` and `oodida plot ID`: an assignment's results as
files analysts load, and as a figure, from the same tidy rows as the Python client's
`Results.to_pandas()` (oodida.client.records.COLUMNS).

    $ oodida results 4 --format csv --out speed.csv
    $ oodida results 4 --format parquet --fleet-only --out fleet.parquet
    $ oodida results 4 --format json --iteration 2        # one JSON object per row
    $ oodida plot 4 --signal SPEED --method mean --out mean.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from oodida.client import AsyncClient, Results
from oodida.client.records import FLEET
from oodida.core.errors import OodidaError

FORMATS = ("table", "json", "csv", "parquet")


class ExportError(OodidaError):
    """An export that cannot be written as asked (say, Parquet to a terminal)."""


def add_export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, help="the tidy rows (as Results.to_pandas()): "
                   "table, json (one object per row), csv or parquet")
    p.add_argument("--fleet-only", action="store_true", help="only the fleet's rows, not each vehicle's")
    p.add_argument("--iteration", type=int, metavar="N", help="only iteration N")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")


def add_plot_parser(sub: Any, add_connection: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("plot", help="a figure of an assignment's results (PNG, SVG or PDF by the file's name)")
    add_connection(p)
    p.add_argument("assignment", type=int)
    p.add_argument("--signal", help="only this signal")
    p.add_argument("--method", help="only this method (mean, histogram, quantiles, kmeans, …)")
    p.add_argument("--iteration", type=int, metavar="N", help="histograms: this iteration (default: the last)")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the figure, e.g. fig.png")


def exporting(args: argparse.Namespace) -> bool:
    return bool(args.format or args.fleet_only or args.iteration is not None or args.out)


async def _read(args: argparse.Namespace, client: AsyncClient) -> Results:
    if getattr(args, "follow", False):
        results = await client.wait(args.assignment, progress=None)
        return results.iteration(args.iteration) if args.iteration is not None else results
    return await client.results(args.assignment, since=args.since, iteration=args.iteration)


async def export(args: argparse.Namespace, client: AsyncClient) -> int:
    results = await _read(args, client)
    fmt = args.format or ("json" if args.json else "table")
    if fmt == "parquet":
        if args.out:
            results.to_parquet(args.out, fleet_only=args.fleet_only)
        elif sys.stdout.isatty():
            raise ExportError("Parquet is binary: give --out FILE (or pipe the output)")
        else:
            import io

            buffer = io.BytesIO()
            results.to_parquet(buffer, fleet_only=args.fleet_only)
            sys.stdout.buffer.write(buffer.getvalue())
            sys.stdout.flush()
    else:
        if fmt == "csv":
            text = results.to_csv(fleet_only=args.fleet_only) or ""
        elif fmt == "json":
            text = results.to_json_lines(fleet_only=args.fleet_only)
        else:
            text = render_rows(results.fleet_records() if args.fleet_only else results.records())
        if args.out:
            _write(args.out, text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    if args.out and not (args.json or fmt == "json"):
        print(f"wrote {len(results.records() if not args.fleet_only else results.fleet_records())} rows of"
              f" {len(results)} iterations to {args.out}", file=sys.stderr)
    if results.state is None and not len(results):
        raise ExportError(f"assignment {args.assignment}: no results")
    return 0 if results.state in ("done", "running") else 1


def _write(path: str, text: str) -> None:
    """The whole export at once: the command has nothing else on its loop by then."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    return str(value)


def render_rows(rows: list[dict[str, Any]]) -> str:
    """The tidy rows as an aligned text table: the columns people read first (every
    column is in --format csv, json and parquet)."""
    columns = ["iteration", "who", "signal", "method", "key", "value", "unit", "samples", "window", "version"]
    table = [columns]
    for r in rows:
        window = ""
        if r["window_start"] is not None and r["window_end"] is not None:
            window = f"{r['window_end'] - r['window_start']:.2f} s"
        value = r["value"] if r["value"] is not None else r["text"]
        if not r["ok"] and r["error"]:
            value = f"error: {r['error']}"
        table.append([
            _fmt(r["iteration"]), FLEET if r["scope"] == FLEET else r["vehicle"], _fmt(r["signal"]),
            _fmt(r["method"]), r["key"] or "", _fmt(value), r["unit"] or "", _fmt(r["samples"]), window,
            (r["code_version"] or "")[:12],
        ])
    widths = [max(len(str(row[i])) for row in table) for i in range(len(columns))]
    right = {"iteration", "value", "samples", "window"}
    lines = []
    for row in table:
        cells = [f"{c:>{w}}" if name in right else f"{c:<{w}}"
                 for c, w, name in zip(row, widths, columns, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


async def plot(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Any]) -> int:
    async with await connect(args) as client:
        results = await client.results(args.assignment)
    if not len(results):
        raise ExportError(f"assignment {args.assignment} has no closed iteration to plot yet")
    fig = results.plot(signal=args.signal, method=args.method, iteration=args.iteration)
    try:
        fig.savefig(args.out, dpi=110)
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot write {args.out}: {exc}") from None
    titles = [ax.get_title() for ax in fig.axes]
    if args.json:
        print(json.dumps({"assignment": args.assignment, "out": args.out, "panels": titles}), flush=True)
    else:
        print(f"wrote {args.out}: {len(titles)} panels ({'; '.join(titles)})", flush=True)
    return 0
