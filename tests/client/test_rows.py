"""The tidy rows, the JSON shape, units and credential lookup, without a fleet; and
that a database from before units were stored still reads."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from oodida.analytics.registry import method_names
from oodida.client.config import ConfigurationError, find_credentials, parse_address
from oodida.client.records import COLUMNS, flatten, report_rows, unit_of
from oodida.client.shape import error_shape, iso, shape
from oodida.client.values import BUILTIN_METHODS
from oodida.server.store import Store
from oodida.wire.messages import AssignmentSpec, IterationReport, Result, VehicleReport, WindowSpec


def test_the_client_knows_every_built_in_method() -> None:
    assert BUILTIN_METHODS == frozenset(method_names())


def test_flatten_names_every_number_by_its_place() -> None:
    value = {"edges": [0.0, 10.0], "counts": [3], "below": 0}
    assert list(flatten(value)) == [("edges[0]", 0.0), ("edges[1]", 10.0), ("counts[0]", 3), ("below", 0)]
    assert list(flatten(4.5)) == [("", 4.5)]
    assert list(flatten({"centroids": [[1, 2]]})) == [("centroids[0][0]", 1), ("centroids[0][1]", 2)]


@pytest.mark.parametrize(("method", "key", "unit", "expected"), [
    ("mean", "", "km/h", "km/h"),
    ("variance", "", "km/h", "(km/h)²"),
    ("variance", "", "deg", "deg²"),
    ("std", "", "deg", "deg"),
    ("count", "", "km/h", None),
    ("histogram", "edges[3]", "km/h", "km/h"),
    ("histogram", "counts[3]", "km/h", None),
    ("histogram", "above", "km/h", None),
    ("quantiles", "0.9", "km/h", "km/h"),
    ("last", "t", "km/h", "s"),
    ("last", "value", "km/h", "km/h"),
    ("mean", "", None, None),
])
def test_units_follow_from_the_method(method: str, key: str, unit: str | None, expected: str | None) -> None:
    assert unit_of(method, key, unit) == expected


def test_kmeans_coordinates_take_their_features_units() -> None:
    assert unit_of("kmeans", "centroids[2][1]", None, ["km/h", "deg"]) == "deg"
    assert unit_of("kmeans", "inertia", None, ["km/h", "deg"]) is None


def _report() -> IterationReport:
    vehicles = {
        "car-1": VehicleReport(ok=True, code_hash="builtin:0.1", value={"mean": {"SPEED": 10.0}},
                               samples={"SPEED": 4}, t_start=100.0, t_end=101.0, units={"SPEED": "km/h"}),
        "car-2": VehicleReport(ok=True, code_hash="builtin:0.1", value={"mean": {"SPEED": 20.0}},
                               samples={"SPEED": 6}, t_start=100.5, t_end=101.5, units={"SPEED": "km/h"}),
        "car-3": VehicleReport(ok=False, code_hash="builtin:0.1", error="signal 'SPEED' is not available"),
    }
    return IterationReport(id=7, assignment=3, iteration=2, iterations=4, status="quorum", vehicles=vehicles,
                           missing=["car-4"], started=1000.0, closed=1002.0, fleet={"mean": {"SPEED": 16.0}},
                           code_hash="builtin:0.1")


def test_a_report_becomes_rows_for_vehicles_then_the_fleet() -> None:
    rows = report_rows(_report())
    assert all(tuple(r) == COLUMNS for r in rows)
    assert [(r["scope"], r["vehicle"], r["value"]) for r in rows] == [
        ("vehicle", "car-1", 10.0), ("vehicle", "car-2", 20.0), ("vehicle", "car-3", None), ("fleet", None, 16.0),
    ]
    failed = rows[2]
    assert not failed["ok"] and failed["error"] == "signal 'SPEED' is not available"
    fleet = rows[3]
    # the fleet's window spans the counted vehicles', its samples are their sum
    assert (fleet["window_start"], fleet["window_end"], fleet["samples"]) == (100.0, 101.5, 10)
    assert fleet["unit"] == "km/h" and fleet["status"] == "quorum"


def test_a_modules_values_are_rows_too() -> None:
    vehicles = {"car-1": VehicleReport(ok=True, code_hash="ab" * 32, value={"over": 3, "name": "x",
                                                                            "SPEED": {"top": 9}},
                                       samples={"SPEED": 5})}
    report = IterationReport(id=1, assignment=1, iteration=1, iterations=1, status="complete", vehicles=vehicles,
                             missing=[], started=0.0, closed=1.0, fleet=None)
    rows = report_rows(report)
    assert [(r["method"], r["signal"], r["key"], r["value"], r["text"]) for r in rows] == [
        ("module", None, "over", 3.0, None), ("module", None, "name", None, "x"), ("module", "SPEED", "top", 9.0, None),
    ]


def test_the_json_shape_drops_protocol_fields_and_gives_times_twice() -> None:
    out = shape(_report())
    assert "id" not in out and "type" not in out
    assert out["closed"] == 1002.0 and out["closed_iso"] == "1970-01-01T00:16:42Z"
    assert out["vehicles"]["car-1"]["t_start_iso"] == "1970-01-01T00:01:40Z"
    assert out["vehicles"]["car-1"]["units"] == {"SPEED": "km/h"}
    assert iso(None) is None and iso(float("nan")) is None
    assert error_shape("results", "no assignment 9", "not_found") == {
        "error": {"command": "results", "code": "not_found", "reason": "no assignment 9"}}


def test_credentials_come_from_the_argument_the_environment_or_the_config_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("OODIDA_CREDENTIALS", raising=False)
    with pytest.raises(ConfigurationError, match="no credentials: pass credentials=FILE, set OODIDA_CREDENTIALS"):
        find_credentials()
    folder = tmp_path / "oodida"
    folder.mkdir()
    (folder / "alice.toml").write_text("")
    assert find_credentials() == folder / "alice.toml"
    (folder / "bob.toml").write_text("")
    with pytest.raises(ConfigurationError, match="2 credential files"):
        find_credentials()
    (folder / "credentials.toml").write_text("")
    assert find_credentials() == folder / "credentials.toml"
    monkeypatch.setenv("OODIDA_CREDENTIALS", "/x/y.toml")
    assert find_credentials() == Path("/x/y.toml")
    assert find_credentials("z.toml") == Path("z.toml")
    assert parse_address("[::1]:7000") == ("::1", 7000)
    with pytest.raises(ConfigurationError, match="write HOST:PORT"):
        parse_address("localhost")


def test_a_database_from_before_units_still_reads(tmp_path) -> None:
    path = tmp_path / "old.sqlite3"
    store = Store(path)
    spec = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1.0))
    a = store.create_assignment(spec, ["car-1"])
    store.add_result(Result(assignment=a, iteration=1, vehicle="car-1", ok=True, code_hash="builtin:0.1", value=1,
                            samples={"SPEED": 3}, t_start=1.0, t_end=2.0))
    store.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE results DROP COLUMN units")  # as a database written before units were stored
    db.commit()
    db.close()
    store = Store(path)  # adds the column
    (old,) = store.result_rows(a, 1)
    assert old.units == {} and (old.t_start, old.t_end) == (1.0, 2.0)
    store.add_result(Result(assignment=a, iteration=2, vehicle="car-1", ok=True, code_hash="builtin:0.1", value=1,
                            samples={"SPEED": 3}, units={"SPEED": "km/h"}))
    (new,) = store.result_rows(a, 2)
    assert new.units == {"SPEED": "km/h"}
    (full,) = store.results(a, 2)
    assert full.units == {"SPEED": "km/h"}
    store.close()


def test_a_unit_longer_than_the_wire_allows_is_refused() -> None:
    import msgspec

    from oodida.wire.messages import Result as R

    with pytest.raises(msgspec.ValidationError, match="units"):
        msgspec.convert({"assignment": 1, "iteration": 1, "vehicle": "v", "ok": True, "code_hash": "h",
                         "units": {"SPEED": "x" * 33}}, R)


def test_the_readme_lists_every_public_method_and_each_has_a_docstring() -> None:
    import inspect

    from oodida.client import AsyncClient, Client, Results

    readme = (Path(__file__).resolve().parents[2] / "docs" / "analysts.md").read_text()
    section = readme.split("## Analysts in Python", 1)[1].split("\n## ", 1)[0]
    for cls in (Client, AsyncClient, Results):
        public = [n for n, f in inspect.getmembers(cls, callable) if not n.startswith("_")]
        for name in public:
            if cls is not Results and name in ("close", "connect", "connect_with", "info", "versions_reply"):
                continue
            assert f"{name}(" in section, f"{cls.__name__}.{name} is not in the API table of docs/analysts.md"
        for name in public:
            assert inspect.getdoc(getattr(cls, name)), f"{cls.__name__}.{name} has no docstring"
    sync = {n for n in vars(Client) if not n.startswith("_") and n != "aio"}
    assert sync <= set(vars(AsyncClient)), sync - set(vars(AsyncClient))  # the same methods, awaited


def test_a_value_that_is_not_finite_is_text_not_a_number() -> None:
    vehicles = {"car-1": VehicleReport(ok=True, code_hash="builtin:0.1", value={"mean": {"SPEED": float("nan")},
                                                                             "max": {"SPEED": float("inf")}},
                                       samples={"SPEED": 0})}
    report = IterationReport(id=1, assignment=1, iteration=1, iterations=1, status="complete", vehicles=vehicles,
                             missing=[], started=0.0, closed=1.0, fleet=None)
    rows = report_rows(report)
    assert [(r["method"], r["value"], r["text"]) for r in rows] == [("mean", None, "nan"), ("max", None, "inf")]
    from oodida.client.results import Results

    assert "NaN" not in Results(1, [report]).to_json_lines()  # valid JSON


def _module_report(iteration: int, share: float) -> IterationReport:
    vehicles = {f"car-{i}": VehicleReport(ok=True, code_hash="ab" * 32, value={"over": i + iteration},
                                          samples={"SPEED": 5}) for i in (1, 2)}
    return IterationReport(id=1, assignment=9, iteration=iteration, iterations=3, status="complete",
                           vehicles=vehicles, missing=[], started=0.0, closed=1.0,
                           fleet={"share_over": share, "vehicles": 2}, off_board_hash="cd" * 32)


def test_a_modules_fleet_values_are_lines_over_iterations() -> None:
    from oodida.client.results import Results

    fig = Results(9, [_module_report(i, 0.1 * i) for i in (1, 2, 3)], "done").plot()
    (ax,) = fig.axes
    assert ax.get_title() == "module values (fleet) · assignment 9"
    assert [line.get_label() for line in ax.get_lines()] == ["share_over", "vehicles"]
    assert list(ax.get_lines()[0].get_ydata()) == pytest.approx([0.1, 0.2, 0.3])


def test_kmeans_before_its_first_centroids_says_so() -> None:
    from oodida.client.plots import NothingToPlot
    from oodida.client.results import Results

    init = {"kmeans": {"phase": "init", "features": ["SPEED"], "candidates": [[1.0]], "n": 3}}
    vehicles = {"car-1": VehicleReport(ok=True, code_hash="builtin:0.1", value=init, samples={"SPEED": 3})}
    report = IterationReport(id=1, assignment=5, iteration=1, iterations=3, status="complete", vehicles=vehicles,
                             missing=[], started=0.0, closed=1.0, fleet=init)
    with pytest.raises(NothingToPlot, match="no k-means centroids yet"):
        Results(5, [report]).plot()
