"""Every per-signal method over a fleet cut from a real drive: the fleet result must
be what numpy gives over all the vehicles' samples put together."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oodida.analytics import Series, get_method, run_off_board, run_on_board, summarize
from oodida.analytics.quantiles import q_key

from .conftest import SIGNALS
from .helpers import cbor_roundtrip, fleet_run

ALL_SIGNALWISE = ["count", "min", "max", "mean", "variance", "std", "quantiles", "histogram", "last"]
EDGES = {"SPEED": [40.0, 45.0, 50.0, 55.0, 60.0, 65.0, 70.0], "STEER_ANGLE": [-3.0, -1.5, 0.0, 1.5]}


def test_count_min_max(fleet, rav4):
    result, state, _ = fleet_run(["count", "min", "max"], fleet, {})
    assert state is None
    for name, series in rav4.items():
        assert result["count"][name] == series.v.size
        assert result["min"][name] == np.min(series.v)
        assert result["max"][name] == np.max(series.v)


@pytest.mark.parametrize("ddof", [0, 1])
def test_mean_variance_std(fleet, rav4, ddof):
    result, _, _ = fleet_run(["mean", "variance", "std"], fleet, {"ddof": ddof})
    for name, series in rav4.items():
        np.testing.assert_allclose(result["mean"][name], np.mean(series.v), rtol=1e-12)
        np.testing.assert_allclose(result["variance"][name], np.var(series.v, ddof=ddof), rtol=1e-12)
        np.testing.assert_allclose(result["std"][name], np.std(series.v, ddof=ddof), rtol=1e-12)


@pytest.mark.parametrize(
    "q",
    [None, [0.0, 1.0], [0.5], np.linspace(0, 1, 101).tolist(), [0.001, 0.1, 1 / 3, 0.999]],
    ids=["default", "ends", "median", "percentiles", "odd"],
)
def test_quantiles_equal_numpy_exactly(fleet, rav4, q):
    params = {} if q is None else {"q": [float(x) for x in q]}
    result, _, _ = fleet_run(["quantiles"], fleet, params)
    qs = params.get("q", [0.25, 0.5, 0.75])
    for name, series in rav4.items():
        expected = np.quantile(series.v, qs)
        assert result["quantiles"][name] == {q_key(x): float(e) for x, e in zip(qs, expected, strict=True)}


def test_quantile_partial_is_small_for_quantised_signals(fleet):
    partial = run_on_board(["quantiles"], fleet["v2"], {}, None)["quantiles"]
    # 1.5 degree steps: a handful of distinct values however long the window.
    assert partial["STEER_ANGLE"]["values"].size < 10 < len(fleet["v2"]["STEER_ANGLE"])


def _check_histogram(result, data, edges):
    counts, _ = np.histogram(data, bins=np.asarray(edges))
    assert result["counts"] == counts.tolist()
    assert result["edges"] == [float(e) for e in edges]
    assert result["below"] == int(np.sum(data < edges[0]))
    assert result["above"] == int(np.sum(data > edges[-1]))
    assert sum(result["counts"]) + result["below"] + result["above"] == data.size


def test_histogram_per_signal_edges(fleet, rav4):
    result, _, _ = fleet_run(["histogram"], fleet, {"bins": EDGES})
    for name, series in rav4.items():
        _check_histogram(result["histogram"][name], series.v, EDGES[name])


def test_histogram_shared_edges_drop_nothing(fleet, rav4):
    edges = [-2.0, 0.0, 2.0, 50.0]
    result, _, _ = fleet_run(["histogram"], fleet, {"bins": edges})
    for name, series in rav4.items():
        _check_histogram(result["histogram"][name], series.v, edges)


def test_histogram_count_and_range(fleet, rav4):
    bins = {"SPEED": {"count": 17, "range": [30.0, 70.0]}, "STEER_ANGLE": [-10.0, 10.0]}
    result, _, _ = fleet_run(["histogram"], fleet, {"bins": bins})
    speed = rav4["SPEED"].v
    counts, edges = np.histogram(speed, bins=17, range=(30.0, 70.0))
    got = result["histogram"]["SPEED"]
    assert got["counts"] == counts.tolist()
    assert got["edges"] == edges.tolist()
    assert got["above"] == int(np.sum(speed > 70.0)) > 0
    assert result["histogram"]["STEER_ANGLE"]["counts"] == [rav4["STEER_ANGLE"].v.size]


def test_histogram_uniform_form_shared_by_all_signals(fleet, rav4):
    result, _, _ = fleet_run(["histogram"], fleet, {"bins": {"count": 4, "range": [-5, 75]}})
    for name, series in rav4.items():
        counts, _ = np.histogram(series.v, bins=4, range=(-5, 75))
        assert result["histogram"][name]["counts"] == counts.tolist()


def test_last_is_latest_sample_of_fleet(fleet, rav4):
    result, _, _ = fleet_run(["last"], fleet, {})
    for name, series in rav4.items():
        assert result["last"][name] == {"t": series.t[-1], "value": series.v[-1]}


def test_last_ties_do_not_depend_on_arrival_order():
    a = {"s": Series([1.0, 2.0], [10.0, 20.0])}
    b = {"s": Series([2.0], [99.0])}
    method = get_method("last")
    pa, pb = method.on_board(a, {}, None), method.on_board(b, {}, None)
    assert method.off_board({"a": pa, "b": pb}, {}, None) == method.off_board({"b": pb, "a": pa}, {}, None)


def test_all_methods_at_once_survive_the_wire(fleet, rav4):
    params = {"bins": EDGES, "q": [0.1, 0.5, 0.9], "ddof": 1}
    direct, _, _ = fleet_run(ALL_SIGNALWISE, fleet, params)
    wired, _, _ = fleet_run(ALL_SIGNALWISE, fleet, params, via_wire=True)
    assert wired == direct
    reversed_order = dict(reversed(list(fleet.items())))
    again, _, _ = fleet_run(ALL_SIGNALWISE, reversed_order, params)
    assert again == direct
    # The fleet result is plain JSON: no numpy scalars or arrays, no NaN.
    json.dumps(direct, allow_nan=False)


def test_summary_of_one_vehicle_matches_numpy(fleet):
    params = {"bins": EDGES, "ddof": 0}
    window = fleet["v1"]
    partial = run_on_board(ALL_SIGNALWISE, window, params, None)
    readable = summarize(ALL_SIGNALWISE, cbor_roundtrip(partial))
    json.dumps(readable, allow_nan=False)
    v = window["SPEED"].v
    assert readable["count"]["SPEED"] == v.size
    assert readable["min"]["SPEED"] == v.min()
    np.testing.assert_allclose(readable["mean"]["SPEED"], v.mean(), rtol=1e-12)
    np.testing.assert_allclose(readable["std"]["SPEED"], v.std(), rtol=1e-12)
    assert readable["quantiles"]["SPEED"]["0.5"] == np.quantile(v, 0.5)
    assert readable["histogram"]["SPEED"]["counts"] == np.histogram(v, EDGES["SPEED"])[0].tolist()
    assert readable["last"]["SPEED"]["t"] == window["SPEED"].t[-1]
    # Same form as the fleet result.
    fleet_result, _, _ = fleet_run(ALL_SIGNALWISE, {"v1": window}, params)
    assert readable == fleet_result


def test_empty_windows_everywhere():
    empty = {name: Series.empty() for name in SIGNALS}
    windows = {"a": empty, "b": empty}
    result, _, partials = fleet_run(ALL_SIGNALWISE, windows, {"bins": [0.0, 1.0], "ddof": 1})
    for name in SIGNALS:
        assert result["count"][name] == 0
        assert result["min"][name] is None and result["max"][name] is None
        assert result["mean"][name] is None
        assert result["variance"][name] is None and result["std"][name] is None
        assert result["quantiles"][name] == {"0.25": None, "0.5": None, "0.75": None}
        assert result["histogram"][name] == {"edges": [0.0, 1.0], "counts": [0], "below": 0, "above": 0}
        assert result["last"][name] == {"t": None, "value": None}
    assert summarize(ALL_SIGNALWISE, partials["a"]) == result


def test_too_few_samples_for_ddof_gives_none_not_nan():
    windows = {"a": {"s": Series([0.0], [3.0])}, "b": {"s": Series.empty()}}
    result, _, _ = fleet_run(["mean", "variance", "std"], windows, {"ddof": 1})
    assert result == {"mean": {"s": 3.0}, "variance": {"s": None}, "std": {"s": None}}
    result, _, _ = fleet_run(["variance"], windows, {"ddof": 0})
    assert result == {"variance": {"s": 0.0}}


def test_vehicle_without_a_signal_counts_as_empty(fleet, rav4):
    windows = dict(fleet)
    windows["v9"] = {"SPEED": Series([1e10], [1000.0])}  # no STEER_ANGLE at all
    result, _, _ = fleet_run(["count", "max", "last"], windows, {})
    assert result["count"]["SPEED"] == rav4["SPEED"].v.size + 1
    assert result["count"]["STEER_ANGLE"] == rav4["STEER_ANGLE"].v.size
    assert result["max"]["SPEED"] == 1000.0
    assert result["last"]["SPEED"] == {"t": 1e10, "value": 1000.0}


def test_no_partials_at_all():
    assert run_off_board(["count", "mean"], {}, {}, None) == ({"count": {}, "mean": {}}, None)


def test_nan_propagates_like_numpy():
    windows = {"a": {"s": Series([0.0, 1.0], [1.0, np.nan])}, "b": {"s": Series([0.0], [-5.0])}}
    result, _, _ = fleet_run(["min", "max", "quantiles"], windows, {})
    data = np.array([1.0, np.nan, -5.0])
    with np.errstate(invalid="ignore"):
        assert np.isnan(result["min"]["s"]) and np.isnan(np.min(data))
    assert all(np.isnan(v) for v in result["quantiles"]["s"].values())
