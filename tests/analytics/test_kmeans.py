"""Federated k-means on (speed, steering angle) of a real drive."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from oodida.analytics import MethodError, Series, get_method, run_off_board, run_on_board, summarize
from oodida.analytics.kmeans import farthest_first, kmeans_plus_plus, nearest, points

from .helpers import cbor_roundtrip, fleet_run

FEATURES = ["SPEED", "STEER_ANGLE"]


def iterate(fleet, params, iterations, *, via_wire=True):
    state, results = None, []
    for _ in range(iterations):
        result, state, _ = fleet_run(["kmeans"], fleet, params, state, via_wire=via_wire)
        results.append(result["kmeans"])
        assert set(state) == {"kmeans"}
    return results, state


def test_converges_on_real_data(fleet, rav4):
    results, state = iterate(fleet, {"k": 4}, 15)
    first, updates = results[0], results[1:]
    assert first["phase"] == "init" and first["inertia"] is None
    assert len(first["centroids"]) == 4 and first["features"] == FEATURES
    assert all(r["phase"] == "update" for r in updates)
    inertias = [r["inertia"] for r in updates]
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(inertias)), inertias
    assert inertias[-1] < 0.7 * inertias[0]
    assert updates[-1]["shift"] == 0.0  # a fixed point: Lloyd has converged
    n = sum(len(points(w, FEATURES)) for w in fleet.values())
    assert all(sum(r["counts"]) == r["n"] == n for r in updates)
    assert state["kmeans"]["centroids"] == updates[-1]["centroids"]
    assert n > 0.99 * len(rav4["SPEED"])
    json.dumps(results, allow_nan=False)


def test_fleet_step_is_a_lloyd_step_over_all_points(fleet):
    results, state = iterate(fleet, {"k": 3}, 2)
    before = np.array(results[0]["centroids"])
    after = np.array(results[1]["centroids"])
    x = np.concatenate([points(w, FEATURES) for w in fleet.values()])
    labels, d2 = nearest(x, before)
    expected = np.array([x[labels == j].mean(axis=0) for j in range(3)])
    np.testing.assert_allclose(after, expected, rtol=1e-12)
    np.testing.assert_allclose(results[1]["inertia"], np.sum(d2), rtol=1e-12)
    assert results[1]["counts"] == np.bincount(labels, minlength=3).tolist()


def test_deterministic_and_independent_of_arrival_order(fleet):
    a, _ = iterate(fleet, {"k": 3}, 3)
    b, _ = iterate(dict(reversed(list(fleet.items()))), {"k": 3}, 3, via_wire=False)
    assert a == b


def test_init_param_skips_the_seeding_iteration(fleet):
    init = [[40.0, 0.0], [70.0, 0.0]]
    results, _ = iterate(fleet, {"k": 2, "init": init}, 2)
    assert [r["phase"] for r in results] == ["update", "update"]
    assert results[0]["inertia"] >= results[1]["inertia"]


def test_features_choose_and_order_dimensions(fleet):
    results, state = iterate(fleet, {"k": 2, "features": ["STEER_ANGLE", "SPEED"]}, 3)
    assert results[-1]["features"] == ["STEER_ANGLE", "SPEED"]
    assert state["kmeans"]["features"] == ["STEER_ANGLE", "SPEED"]
    speeds = sorted(c[1] for c in results[-1]["centroids"])
    assert 30 < speeds[0] < speeds[1] < 75
    one, _ = iterate(fleet, {"k": 2, "features": ["SPEED"]}, 2)
    assert all(len(c) == 1 for c in one[-1]["centroids"])


def test_max_points_caps_the_work(fleet):
    results, _ = iterate(fleet, {"k": 2, "max_points": 50}, 2)
    vehicles_with_data = sum(1 for w in fleet.values() if len(w["SPEED"]))
    assert results[1]["n"] == 50 * vehicles_with_data


def test_empty_cluster_keeps_its_place():
    window = {"a": Series([0.0, 1.0], [0.0, 1.0])}
    params = {"k": 2, "init": [[0.5], [100.0]]}
    result, state = run_off_board(["kmeans"], {"v": run_on_board(["kmeans"], window, params, None)}, params, None)
    assert result["kmeans"]["centroids"] == [[0.5], [100.0]]
    assert result["kmeans"]["counts"] == [2, 0]


def test_no_points_anywhere_retries_the_seeding():
    empty = {"SPEED": Series.empty(), "STEER_ANGLE": Series.empty()}
    result, state, partials = fleet_run(["kmeans"], {"a": empty, "b": empty}, {"k": 3}, via_wire=True)
    assert result["kmeans"]["phase"] == "init" and result["kmeans"]["centroids"] == []
    assert state == {"kmeans": None}
    assert summarize(["kmeans"], partials["a"])["kmeans"]["n"] == 0


def test_fewer_distinct_points_than_k():
    window = {"x": Series([0.0, 1.0, 2.0], [5.0, 5.0, 7.0])}
    result, state, _ = fleet_run(["kmeans"], {"a": window, "b": window}, {"k": 5})
    assert sorted(result["kmeans"]["centroids"]) == [[5.0], [7.0]]


def test_points_hold_each_value_until_the_next_sample():
    window = {
        "a": Series([0.0, 1.0, 2.0, 3.0], [10.0, 11.0, 12.0, 13.0]),
        "b": Series([0.5, 2.0], [100.0, 200.0]),
    }
    np.testing.assert_array_equal(points(window, ["a", "b"]), [[11.0, 100.0], [12.0, 200.0], [13.0, 200.0]])
    np.testing.assert_array_equal(points(window, ["b", "a"]), [[100.0, 10.0], [200.0, 12.0]])
    assert points(window, ["a", "missing"]).shape == (0, 2)
    nan = {"a": Series([0.0, 1.0], [np.nan, 1.0])}
    np.testing.assert_array_equal(points(nan, ["a"]), [[1.0]])


def test_seeding_helpers_are_deterministic_and_distinct():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 3))
    a, b = kmeans_plus_plus(x, 6, seed=0), kmeans_plus_plus(x, 6, seed=0)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a, axis=0)) == 6
    chosen = farthest_first(x, 4)
    assert len(np.unique(chosen, axis=0)) == 4
    np.testing.assert_array_equal(chosen[0], x[np.argmax(((x - x.mean(axis=0)) ** 2).sum(axis=1))])


def test_nearest_works_in_blocks():
    rng = np.random.default_rng(2)
    x, c = rng.normal(size=(300_000, 2)), rng.normal(size=(8, 2))
    labels, d2 = nearest(x, c)
    sample = slice(None, None, 997)
    full = ((x[sample, None, :] - c[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(labels[sample], full.argmin(axis=1))
    np.testing.assert_allclose(d2[sample], full.min(axis=1), rtol=1e-12)


def test_summary_of_a_vehicle(fleet):
    params = {"k": 2, "init": [[40.0, 0.0], [70.0, 0.0]]}
    partial = run_on_board(["kmeans"], fleet["v1"], params, None)
    readable = summarize(["kmeans"], cbor_roundtrip(partial))["kmeans"]
    x = points(fleet["v1"], FEATURES)
    labels, _ = nearest(x, np.array(params["init"]))
    assert readable["counts"] == np.bincount(labels, minlength=2).tolist()
    for j, centroid in enumerate(readable["centroids"]):
        if readable["counts"][j]:
            np.testing.assert_allclose(centroid, x[labels == j].mean(axis=0), rtol=1e-12)
        else:
            assert centroid is None
    json.dumps(readable, allow_nan=False)


def test_inconsistent_vehicles_are_refused(fleet):
    method = get_method("kmeans")
    init = method.on_board(fleet["v0"], {"k": 2}, None)
    update = method.on_board(fleet["v1"], {"k": 2, "init": [[40.0, 0.0], [70.0, 0.0]]}, None)
    with pytest.raises(MethodError, match="some vehicles initialised while others updated"):
        method.off_board({"a": init, "b": update}, {"k": 2}, None)
    swapped = method.on_board(fleet["v0"], {"k": 2, "features": ["STEER_ANGLE", "SPEED"]}, None)
    with pytest.raises(MethodError, match="different features"):
        method.off_board({"a": init, "b": swapped}, {"k": 2}, None)
    with pytest.raises(MethodError, match="no centroids were known"):
        method.off_board({"b": update}, {"k": 2}, None)
    with pytest.raises(MethodError, match="state centroids must be a"):
        method.on_board(fleet["v0"], {"k": 2}, {"centroids": [[1.0, 2.0, 3.0]], "features": FEATURES})
