"""Figures checked as matplotlib objects (axes, titles, units, series), `oodida plot`
as a PNG, `--json` of every analyst command in one shape, and the example notebook
script end to end."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest

import oodida
from oodida.client import Results
from tests.client.helpers import KMEANS, METHODS, PARAMS, REPO, STEER, env_of
from tests.client.helpers import oodida as run_oodida

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(fleet):
    with oodida.connect(fleet.analyst_credentials, server=f"127.0.0.1:{fleet.port}") as c:
        yield c


@pytest.fixture(scope="module")
def stats(client) -> Results:
    a = client.submit(signals=["SPEED", STEER], window="1s", iterations=3, on_board=METHODS, params=PARAMS, deadline=20)
    results = a.wait(progress=False)
    assert results.state == "done"
    return results


@pytest.fixture(scope="module")
def kmeans(client) -> Results:
    a = client.submit(signals=["SPEED", STEER], window="1s", iterations=4, on_board=["kmeans"], params=KMEANS,
                      deadline=20)
    results = a.wait(progress=False)
    assert results.state == "done"
    return results


# --- figures ----------------------------------------------------------------------------------


def test_a_number_per_vehicle_is_the_fleet_line_with_the_vehicles_spread(stats: Results) -> None:
    fig = stats.plot(signal="SPEED", method="mean")
    (ax,) = fig.axes
    assert ax.get_title() == f"mean of SPEED (km/h) · assignment {stats.assignment}"
    assert ax.get_xlabel() == "iteration" and ax.get_ylabel() == "mean of SPEED [km/h]"
    (line,) = ax.get_lines()  # the fleet
    assert line.get_label() == "fleet"
    assert list(line.get_xdata()) == [1, 2, 3]
    fleet_means = [r.fleet["mean"]["SPEED"] for r in stats.reports]
    assert list(line.get_ydata()) == fleet_means
    band, points = ax.collections  # the vehicles' range (fill_between) and each vehicle's value
    assert band.get_label() == "vehicles' range" and points.get_label() == "vehicles"
    assert len(points.get_offsets()) == 3 * 3  # 3 vehicles x 3 iterations
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["vehicles' range", "vehicles", "fleet"]


def test_histograms_are_bars_for_the_fleet_and_per_vehicle(stats: Results) -> None:
    fig = stats.plot(signal="SPEED", method="histogram")
    fleet_ax, vehicles_ax = fig.axes
    assert fleet_ax.get_title() == f"histogram of SPEED (km/h), iteration 3, fleet · assignment {stats.assignment}"
    assert fleet_ax.get_xlabel() == "SPEED [km/h]" and fleet_ax.get_ylabel() == "samples"
    (bars,) = fleet_ax.containers
    assert len(bars) == 6  # bins
    assert [b.get_height() for b in bars] == stats.reports[-1].fleet["histogram"]["SPEED"]["counts"]
    assert [b.get_x() for b in bars] == pytest.approx([0, 20, 40, 60, 80, 100])
    assert len(vehicles_ax.containers) == 3  # one bar group per vehicle
    assert [t.get_text() for t in vehicles_ax.get_legend().get_texts()] == ["car-1", "car-2", "car-3"]
    per_vehicle = sum(sum(b.get_height() for b in c) for c in vehicles_ax.containers)
    assert per_vehicle == sum(b.get_height() for b in bars)  # fleet = sum of the vehicles, all in range here


def test_quantiles_are_bands_around_the_median(stats: Results) -> None:
    fig = stats.plot(signal="SPEED", method="quantiles")
    (ax,) = fig.axes
    assert ax.get_title() == f"quantiles of SPEED (km/h) · assignment {stats.assignment}"
    assert ax.get_ylabel() == "SPEED [km/h]"
    (band,) = ax.collections
    assert band.get_label() == "fleet 0.1–0.9"
    (median,) = ax.get_lines()
    assert median.get_label() == "fleet 0.5"
    assert list(median.get_ydata()) == [r.fleet["quantiles"]["SPEED"]["0.5"] for r in stats.reports]


def test_kmeans_centroids_and_their_movement(kmeans: Results) -> None:
    fig = kmeans.plot()
    (ax,) = fig.axes
    assert ax.get_xlabel() == "SPEED [km/h]" and ax.get_ylabel().startswith(STEER)
    assert "k-means centroids" in ax.get_title()
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["centroid 0", "centroid 1"]
    closed = [r for r in kmeans.reports if r.fleet["kmeans"].get("centroids")]
    assert len(lines[0].get_xdata()) == len(closed)  # one point per iteration that had centroids
    last = closed[-1].fleet["kmeans"]["centroids"]
    assert [lines[0].get_xdata()[-1], lines[0].get_ydata()[-1]] == pytest.approx(last[0])
    assert len(ax.collections) == 2  # the last position of each, marked


def test_all_panels_and_a_clear_error_for_nothing(stats: Results) -> None:
    fig = stats.plot()
    titles = [ax.get_title() for ax in fig.axes]
    # count, mean, min, max, variance (1 axis each), histogram (2), quantiles (1), per signal
    assert len(fig.axes) == 2 * (5 + 2 + 1)
    assert f"variance of SPEED ((km/h)²) · assignment {stats.assignment}" in titles
    with pytest.raises(oodida.client.results.OodidaError, match="no values for signal NOPE; there is count/SPEED"):
        stats.plot(signal="NOPE")


def test_oodida_plot_writes_a_png(fleet, stats: Results, tmp_path) -> None:
    out = tmp_path / "fig.png"
    done = run_oodida(fleet, "plot", str(stats.assignment), "--signal", "SPEED", "--method", "mean",
                      "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["panels"] == [f"mean of SPEED (km/h) · assignment {stats.assignment}"]
    head = out.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert width > 600 and height > 300
    missing = run_oodida(fleet, "plot", str(stats.assignment), "--method", "nope", "--out", str(out), "--json")
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["error"]["reason"].startswith(f"assignment {stats.assignment}: no values")


# --- --json: one shape ------------------------------------------------------------------------


def _no_protocol_fields(obj: object) -> None:
    if isinstance(obj, dict):
        assert "type" not in obj and "id" not in obj, obj
        for k, v in obj.items():
            if k not in ("value", "fleet"):  # a method's or module's own value
                _no_protocol_fields(v)
    elif isinstance(obj, list):
        for v in obj:
            _no_protocol_fields(v)


def _lines(done: subprocess.CompletedProcess[str]) -> list[dict]:
    assert done.stdout.strip(), done.stderr
    objects = [json.loads(line) for line in done.stdout.splitlines()]
    for o in objects:
        _no_protocol_fields(o)
    return objects


def test_json_everywhere_has_one_shape(fleet, tmp_path) -> None:
    examples = REPO / "examples"
    submitted = run_oodida(fleet, "submit", "--signals", "SPEED", "--window", "0.5s", "--iterations", "0",
                           "--on-board-module", str(examples / "speeding.py"), "--deadline", "20", "--json")
    assert submitted.returncode == 0, submitted.stderr
    (first,) = _lines(submitted)
    a = first["assignment"]
    assert first["vehicles"] == fleet.vehicle_ids

    status = run_oodida(fleet, "status", "--json")
    (s,) = _lines(status)
    assert isinstance(s["server_time"], float) and s["server_time_iso"].endswith("Z")
    mine = next(x for x in s["assignments"] if x["assignment"] == a)
    assert mine["state"] == "running" and mine["created_iso"].startswith("20")
    assert all(v["connected_at_iso"] for v in s["vehicles"])

    deployed = run_oodida(fleet, "deploy", str(examples / "speeding_v2.py"), "--assignment", str(a), "--on-board",
                          "--json")
    assert deployed.returncode == 0, deployed.stderr
    events = _lines(deployed)
    assert events[0]["event"] == "deploying" and events[-1]["event"] == "deploy_end" and events[-1]["complete"]

    versions = run_oodida(fleet, "versions", str(a), "--json")
    (v,) = _lines(versions)
    assert [x["kind"] for x in v["versions"]] == ["submit", "deploy"]
    assert all(x["at_iso"].endswith("Z") for x in v["versions"])

    back = run_oodida(fleet, "rollback", str(a), v["versions"][0]["code_hash"][:10], "--json")
    assert back.returncode == 0, back.stderr
    assert _lines(back)[0]["rollback"] is True

    cancelled = run_oodida(fleet, "cancel", str(a), "--json")
    assert _lines(cancelled) == [{"assignment": a, "state": "cancelled"}]

    results = run_oodida(fleet, "results", str(a), "--json", "--follow")
    reports = _lines(results)
    assert reports and all(r["closed_iso"].endswith("Z") and isinstance(r["closed"], float) for r in reports)
    vehicle = next(iter(reports[0]["vehicles"].values()))
    assert vehicle["t_start_iso"] and vehicle["units"] == {"SPEED": "km/h"}

    for args in (["results", "99999"], ["cancel", "99999"], ["versions", "99999"]):
        failed = run_oodida(fleet, *args, "--json")
        assert failed.returncode == 1
        (error,) = _lines(failed)
        assert error == {"error": {"command": args[0], "code": "not_found", "reason": "no assignment 99999"}}


# --- the example -------------------------------------------------------------------------------


def test_the_example_analysis_runs_end_to_end(fleet, tmp_path) -> None:
    env = {**env_of(fleet), "OODIDA_EXAMPLE_WINDOW": "1s", "OODIDA_EXAMPLE_OUT": str(tmp_path), "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(REPO / "examples" / "analysis.py")], env=env, capture_output=True,
                          text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "every iteration complete: True" in out
    assert "mean speed (km/h) per iteration:" in out
    assert "computed by version 2:" in out
    assert (tmp_path / "speed.png").read_bytes()[:4] == b"\x89PNG"
