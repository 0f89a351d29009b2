"""What `oodida results` prints about versions: which code computed an iteration, and
which vehicles were set aside for running another version."""

from __future__ import annotations

from oodida.commands.render import render_report, report_json
from oodida.wire.messages import IterationReport, VehicleReport

H1, H2 = "a" * 64, "b" * 64


def report(**kw) -> IterationReport:
    vehicles = {
        "car-1": VehicleReport(ok=True, code_hash=H1, value={"version": 1, "n": 10}),
        "car-2": VehicleReport(ok=True, code_hash=H1, value={"version": 1, "n": 12}),
        "car-3": VehicleReport(ok=True, code_hash=H2, value={"version": 2, "n": 11}),
    }
    fields = dict(
        id=1, assignment=4, iteration=3, iterations=5, status="complete", vehicles=vehicles, missing=[],
        started=0.0, closed=0.5, fleet={"versions": [1]}, reason="all 3 vehicles answered",
        code_hash=H1, off_board_hash=H2, set_aside={"car-3": H2},
    )
    fields.update(kw)
    return IterationReport(**fields)


def test_the_version_line_and_the_set_aside_vehicle_are_shown():
    text = render_report(report(), methods=[])
    assert f"  version: on board {H1[:12]}, off board {H2[:12]}" in text.splitlines()
    rows = [line for line in text.splitlines() if line.startswith("  car-")]
    assert rows[0].startswith("  car-1") and "version=1" in rows[0] and "car-3  " not in text
    assert f"  car-3: set aside, ran another version ({H2[:12]}): version=2  n=11" in text.splitlines()


def test_built_in_assignments_show_no_version_line():
    text = render_report(report(code_hash="builtin:0.1", off_board_hash=None, set_aside={}), methods=[])
    assert "version:" not in text


def test_json_carries_the_versions():
    data = report_json(report())
    assert data["code_hash"] == H1 and data["off_board_hash"] == H2 and data["set_aside"] == {"car-3": H2}
