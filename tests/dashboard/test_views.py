"""What the pages compute, fed plain data as the source hands it out (no browser, no
fleet), and the command line's refusals."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

from oodida.dashboard import charts, views


def status(vehicles: list[dict], assignments: list[dict] | None = None) -> dict:
    return {"server_time": 0.0, "vehicles": vehicles, "assignments": assignments or [], "pid": 1, "sandbox": None}


def vehicle(name: str, frames: int = 0, **extra: object) -> dict:
    s = {"frames": frames, "unknown_frames": 0, "malformed_frames": 0, "signal_time": None, "sources": [],
         "signals": ["SPEED"], "running": 0, "pending_results": 0, "outbox_dropped": 0, "outbox_error": None,
         "pid": 5, "sandbox": None, "modules": {}}
    s.update(extra)
    return {"vehicle": name, "connected_at": 100.0, "address": "127.0.0.1:1", "status": s}


def test_a_vehicle_that_goes_offline_is_listed_since_then_and_first() -> None:
    t = views.FleetTracker()
    t.update(status([vehicle("car-1", 0), vehicle("car-2", 0)]), now=1000.0)
    rows = t.update(status([vehicle("car-1", 500), vehicle("car-2", 900)]), now=1001.0)
    assert [r.fps for r in rows] == [500.0, 900.0]
    rows = t.update(status([vehicle("car-2", 1800)], [{"vehicles": ["car-1", "car-2", "car-9"]}]), now=1010.0)
    by = {r.vehicle: r for r in rows}
    assert not by["car-1"].online and by["car-1"].since == 1010.0
    assert not by["car-9"].online and by["car-9"].since is None  # named by an assignment, never seen here
    assert by["car-2"].online
    assert rows[-1].vehicle == "car-2"  # healthy last
    # still offline later: the time it went stays
    rows = t.update(status([vehicle("car-2", 2000)]), now=1020.0)
    assert {r.vehicle: r.since for r in rows}["car-1"] == 1010.0


def test_problems_come_newest_first_and_say_what() -> None:
    t = views.FleetTracker()
    t.update(status([vehicle("car-1"), vehicle("car-2"), vehicle("car-3")]), now=10.0)
    t.update(status([vehicle("car-1", malformed_frames=3), vehicle("car-2"), vehicle("car-3")]), now=20.0)
    failed = [{"name": "gps", "state": "failed", "frames": 0, "error": "device unplugged"}]
    rows = t.update(status([vehicle("car-1", malformed_frames=4), vehicle("car-2", sources=failed,
                                                                         outbox_dropped=2), vehicle("car-3")]),
                                                                         now=30.0)
    assert [r.vehicle for r in rows] == ["car-2", "car-1", "car-3"]
    assert [p for p, _ in rows[0].problems] == ["source gps failed: device unplugged", "outbox dropped 2 result(s)"]
    assert rows[1].problems == [("4 malformed frame(s)", 20.0)]  # first seen at 20, still there
    assert rows[2].problems == []


def report(n: int, fleet: dict, vehicles: dict, **extra: object) -> dict:
    return {"assignment": 1, "iteration": n, "iterations": 3, "status": "complete", "vehicles": vehicles,
            "missing": [], "started": 0.0, "closed": 1.0, "fleet": fleet, "reason": None, "code_hash": "builtin:0.1",
            "off_board_hash": None, "set_aside": {}, **extra}


def answer(value: object, ok: bool = True, **extra: object) -> dict:
    return {"ok": ok, "code_hash": "aa" * 32, "value": value, "error": None, "samples": {"SPEED": 10},
            "late": False, "flags": [], **extra}


def test_fleet_value_with_the_per_vehicle_spread_leaves_out_set_aside_and_late() -> None:
    reports = [
        report(1, {"mean": {"SPEED": 50.0}}, {"a": answer({"mean": {"SPEED": 40.0}}),
                                              "b": answer({"mean": {"SPEED": 60.0}}),
                                           "c": answer({"mean": {"SPEED": 999.0}}, late=True)}),
        report(2, {"mean": {"SPEED": 55.0}}, {"a": answer({"mean": {"SPEED": 45.0}}),
                                              "b": answer({"mean": {"SPEED": 65.0}}),
                                           "d": answer({"mean": {"SPEED": -999.0}})}, set_aside={"d": "bb" * 32}),
    ]
    [chart] = views.assignment_charts(reports, [])
    svg = ET.fromstring(str(chart))
    assert svg.get("aria-label") == "mean of SPEED"
    ns = "{http://www.w3.org/2000/svg}"
    points = svg.findall(f".//{ns}circle") or svg.findall(".//circle")
    assert len(points) == 2
    ticks = [t.text for t in svg.iter() if t.tag.endswith("text")]
    assert "999" not in " ".join(ticks) and "-999" not in " ".join(ticks)  # not stretched by excluded answers


def test_deploys_are_marked_before_the_iteration_they_took_over() -> None:
    versions = [
        {"side": "on_board", "code_hash": "11" * 32, "name": "v1", "kind": "submit", "by": "alice", "at": 1.0,
         "vehicles": None, "acked": [], "iterations": [1, 2], "current": False},
        {"side": "on_board", "code_hash": "22" * 32, "name": "v2", "kind": "deploy", "by": "bob", "at": 2.0,
         "vehicles": None, "acked": [], "iterations": [3], "current": True},
        {"side": "on_board", "code_hash": "33" * 32, "name": "v1", "kind": "rollback", "by": "bob", "at": 3.0,
         "vehicles": None, "acked": [], "iterations": [], "current": False},
    ]
    reports = [report(n, {"share": 0.1 * n}, {"a": answer({"share": 0.1})}) for n in (1, 2, 3)]
    assert views.markers(versions, reports) == [
        (2.5, "deploy 22222222 (on board)", "deploy"), (3.5, "rollback 33333333 (on board)", "rollback")]
    assert views.submitter(versions) == "alice"
    rows = views.takeovers(versions, reports)
    assert [(r["took_over"], r["pending"]) for r in rows] == [(1, False), (3, False), (None, True)]
    [chart] = views.assignment_charts(reports, versions)
    assert str(chart).count('class="marker marker-') == 2


def test_the_vehicle_table_says_why_each_is_missing_or_set_aside() -> None:
    r = report(1, {}, {"a": answer({"x": 1}), "b": answer(None, ok=False, error="timeout"),
                       "c": answer({"x": 2}, late=True), "d": answer({"x": 3})},
               missing=["e"], set_aside={"d": "ff" * 32})
    rows = views.vehicle_rows(r)
    assert [(x["vehicle"], x["state"]) for x in rows] == [
        ("e", "missing"), ("b", "error"), ("d", "set aside"), ("c", "late"), ("a", "ok")]
    assert rows[1]["why"] == "timeout" and "another version (ffffffffffff)" in rows[2]["why"]


def test_charts_escape_what_the_analyst_named() -> None:
    chart = charts.series_chart('<script>alert("x")</script>', lines=[("fleet", [(1.0, 2.0), (2.0, 3.0)])])
    assert "<script>" not in str(chart)
    ET.fromstring(str(chart))  # well-formed


def dashboard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oodida", "dashboard", *args], capture_output=True, text=True,
                          timeout=60)


def test_bad_usage_is_refused_with_the_reason_and_no_traceback() -> None:
    for args, words in [
        ((), "say which server"),
        (("--server", "nonsense"), "write HOST:PORT"),
        (("--server", "127.0.0.1:7400", "--listen", "0.0.0.0:8470"), "plain TCP is only allowed on a loopback"),
        (("--server", "127.0.0.1:7400", "--cert", "x.pem"), "--cert and --key go together"),
        (("--server", "127.0.0.1:7400", "--ca", "/nonexistent/ca.pem"), "cannot load it"),
        (("--server", "127.0.0.1:7400", "--refresh", "0"), "must be above 0"),
    ]:
        done = dashboard(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)


def test_quorum_deadline_and_units_show_where_the_server_gives_them() -> None:
    from oodida.dashboard.app import Dashboard, DashboardConfig

    d = Dashboard(DashboardConfig("127.0.0.1", 7400, None, False))

    class S:
        analyst, csrf = False, "x"

    item = {"assignment": 3, "name": "n", "state": "running", "iterations": 4, "completed": 1, "vehicles": ["a"],
            "created": 0.0, "reason": None, "submitter": None, "in_force": [],
            "open": {"iteration": 2, "answered": 3, "asked": 5, "quorum": 4, "deadline_in": 12.4}}
    html = d.render("_assignments_table.html", items=[item], s=S(), error=None, now=0.0)
    assert "3 of 5 answered, quorum 4, 12 s to the deadline" in html
    assert "button" not in html  # a reader's table has no cancel
    del item["open"]  # a server whose status does not say
    assert "—" in d.render("_assignments_table.html", items=[item], s=S(), error=None, now=0.0)
    r = report(1, {"mean": {"SPEED": 1.0}}, {"a": answer({"mean": {"SPEED": 1.0}}, units={"SPEED": "km/h"})})
    [chart] = views.assignment_charts([r], [])
    assert "km/h" in str(chart)


def test_positions_are_drawn_where_the_vehicles_reported_and_kept_once_offline() -> None:
    t = views.FleetTracker()
    at = {"car-1": (57.70887, 11.97456), "car-<b>2": (57.68, 11.99)}
    rows = t.update(status([vehicle(v, 0, position={"latitude": la, "longitude": lo, "time": 5.0})
                            for v, (la, lo) in at.items()] + [vehicle("car-3", 0)]), now=1000.0)
    assert {r.vehicle: r.position for r in rows}["car-3"] is None  # no GPS: not drawn
    rows = t.update(status([vehicle("car-1", 10)], [{"vehicles": ["car-1", "car-<b>2"]}]), now=1001.0)
    by = {r.vehicle: r for r in rows}
    assert not by["car-<b>2"].online and by["car-<b>2"].position["latitude"] == 57.68  # the last known fix
    points = [(r.vehicle, r.position["latitude"], r.position["longitude"], r.online) for r in rows if r.position]
    svg = ET.fromstring(str(charts.positions_chart(points)))
    ns = {"s": "http://www.w3.org/2000/svg"}
    groups = svg.findall(".//s:g[@class]", ns) or [g for g in svg.iter() if g.get("class", "").startswith("position")]
    drawn = {g.get("data-vehicle"): g for g in groups if g.get("class", "").startswith("position")}
    assert set(drawn) == {"car-1", "car-<b>2"}  # escaped in the SVG, read back as the name
    assert "offline" in drawn["car-<b>2"].get("class") and "offline" not in drawn["car-1"].get("class")
    circle = {v: next(c for c in g.iter() if c.tag.endswith("circle")) for v, g in drawn.items()}
    x1, y1 = float(circle["car-1"].get("cx")), float(circle["car-1"].get("cy"))
    x2, y2 = float(circle["car-<b>2"].get("cx")), float(circle["car-<b>2"].get("cy"))
    assert x1 < x2 and y1 < y2  # car-1 is further west (smaller x) and further north (smaller y on screen)
    labels = " ".join(t.text or "" for t in svg.iter() if t.tag.endswith("text"))
    assert "longitude" in labels and "latitude" in labels
    assert "empty" in charts.positions_chart([]).split('"')[1]
