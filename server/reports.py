"""What analysts see of an iteration, built from what the store holds.

Vehicles send partial results (a mean as count and sum, a quantile as a value
histogram); analysts want the same readable form for each vehicle as for the fleet.
The store keeps the partials, and this module summarises them on the way out, so a
report built live and one built a week later from the database are the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from oodida.analytics import registry
from oodida.analytics.arrays import from_wire, to_wire
from oodida.server.storage import Store
from oodida.server.store import IterationRow
from oodida.wire.messages import AssignmentSpec, IterationReport, VehicleReport

log = logging.getLogger(__name__)


def vehicle_value(
    spec: AssignmentSpec, value: Any, summarize: Callable[[Mapping[str, Any]], Any] | None = None
) -> Any:
    """A vehicle's partial result in readable form (the method's own summary);
    `summarize`: `registry.summarizer(spec.methods)`, made once per report."""
    if not spec.methods:  # an analyst's module: its value is already what they want to see
        return value
    try:
        if summarize is None:
            summarize = registry.summarizer(spec.methods)
        return to_wire(summarize(from_wire(value)))
    except Exception as exc:  # a vehicle's odd partial must not break the report
        log.warning("cannot summarise a partial result: %s", exc)
        return value


def build_report(store: Store, spec: AssignmentSpec, row: IterationRow, request: int) -> IterationReport:
    try:
        summarize = registry.summarizer(spec.methods) if spec.methods else None
    except Exception:  # vehicle_value says why, per vehicle
        summarize = None
    vehicles = {
        r.vehicle: VehicleReport(
            ok=r.ok,
            code_hash=r.code_hash,
            value=vehicle_value(spec, r.value, summarize) if r.ok else None,
            error=r.error,
            samples=r.samples,
            late=r.late,
            flags=r.flags,
            t_start=r.t_start,
            t_end=r.t_end,
            units=r.units,
        )
        for r in store.result_rows(row.assignment, row.iteration)
    }
    return IterationReport(
        id=request,
        assignment=row.assignment,
        iteration=row.iteration,
        iterations=spec.iterations,
        status=row.status,  # type: ignore[arg-type]
        vehicles=vehicles,
        missing=row.missing,
        started=row.started,
        closed=row.closed if row.closed is not None else row.started,
        fleet=row.fleet,
        reason=row.reason,
        code_hash=row.code_hash,
        off_board_hash=row.off_board_hash,
        set_aside=row.set_aside,
    )
