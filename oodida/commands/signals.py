"""`oodida signals [--vehicle V] [--json]`: the fleet's signal catalogue.

One row per signal: its unit and range from the DBC, the rate each vehicle measures
(one figure when they agree to 1 %, else the spread), and which vehicles serve it.
The request itself is `AnalystClient.catalogue()` (oodida.client.protocol); this module only shapes its answer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any

from oodida.wire.messages import SignalsReply


def add_parser(sub: Any, add_connection: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("signals", help="every signal the vehicles can serve: unit, range, rate, which vehicles")
    add_connection(p)
    p.add_argument("--vehicle", help="only this vehicle's signals")


def catalogue_json(reply: SignalsReply) -> dict[str, Any]:
    """{"vehicles": [...], "signals": [{name, unit, minimum, maximum, vehicles: {v: {rate, samples}}}]}."""
    signals: dict[str, dict[str, Any]] = {}
    for vs in reply.vehicles:
        for s in vs.signals:
            row = signals.setdefault(
                s.name, {"name": s.name, "unit": s.unit, "minimum": s.minimum, "maximum": s.maximum, "vehicles": {}}
            )
            row["vehicles"][vs.vehicle] = {"rate": s.rate, "samples": s.samples}
    return {
        "vehicles": [
            {
                "vehicle": vs.vehicle,
                "connected": vs.connected,
                "reported": dt.datetime.fromtimestamp(vs.reported, dt.UTC).isoformat(),
                "reported_epoch": vs.reported,
                "signals": len(vs.signals),
            }
            for vs in reply.vehicles
        ],
        "signals": [signals[name] for name in sorted(signals)],
    }


def _printable(text: str) -> str:
    """A unit is a peer's free text: no control characters reach the terminal."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _range(row: dict[str, Any]) -> str:
    lo, hi = row["minimum"], row["maximum"]
    if lo is None and hi is None:
        return "—"
    return f"{'—' if lo is None else f'{lo:g}'} … {'—' if hi is None else f'{hi:g}'}"


def _rate(rates: list[float]) -> str:
    if not rates:
        return "—"
    lo, hi = min(rates), max(rates)
    if hi - lo <= 0.01 * max(hi, 1e-9):
        return f"{(lo + hi) / 2:.4g} Hz"
    return f"{lo:.4g}–{hi:.4g} Hz"


def _vehicles(names: list[str], fleet: list[str]) -> str:
    if len(fleet) > 1 and names == fleet:
        return f"all {len(fleet)}"
    return ", ".join(names)


def render_catalogue(reply: SignalsReply) -> str:
    if not reply.vehicles:
        return "no vehicle has reported its signals yet (agents send them once connected)"
    data = catalogue_json(reply)
    fleet = sorted(v["vehicle"] for v in data["vehicles"])
    rows = [("SIGNAL", "UNIT", "RANGE", "RATE", "VEHICLES")]
    for row in data["signals"]:
        rates = [v["rate"] for v in row["vehicles"].values() if v["rate"] is not None]
        rows.append((
            row["name"], _printable(row["unit"]) or "—", _range(row), _rate(rates),
            _vehicles(sorted(row["vehicles"]), fleet),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in rows]
    away = [v["vehicle"] for v in data["vehicles"] if not v["connected"]]
    summary = f"{len(data['signals'])} signals on {len(fleet)} vehicles"
    if away:
        summary += f" (not connected now, last known: {', '.join(away)})"
    return "\n".join([*lines, summary])


async def signals(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Awaitable[Any]]) -> int:
    async with await connect(args) as client:
        reply = await client.protocol.catalogue(args.vehicle)
    print(json.dumps(catalogue_json(reply)) if args.json else render_catalogue(reply), flush=True)
    return 0
