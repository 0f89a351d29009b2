"""Names, combinations and params are refused early, with a reason a user can act on."""

from __future__ import annotations

import numpy as np
import pytest

from oodida.analytics import (
    Method,
    MethodError,
    Series,
    check,
    get_method,
    method_names,
    run_off_board,
    run_on_board,
    summarize,
)
from oodida.core.errors import OodidaError

SIGNALS = ["SPEED", "STEER_ANGLE"]
BUILT_IN = ["count", "histogram", "kmeans", "last", "max", "mean", "min", "quantiles", "std", "variance"]


def test_names_and_protocol():
    assert method_names() == BUILT_IN
    for name in BUILT_IN:
        method = get_method(name)
        assert isinstance(method, Method)
        assert method.name == name
        assert method.iterative == (name == "kmeans")


def test_method_error_is_both_ours_and_a_value_error():
    assert issubclass(MethodError, OodidaError) and issubclass(MethodError, ValueError)


@pytest.mark.parametrize("name", ["median", "", "MEAN", None, 3])
def test_unknown_method_lists_the_known_ones(name):
    with pytest.raises(MethodError, match="unknown analytics method") as info:
        get_method(name)
    assert all(known in str(info.value) for known in BUILT_IN)
    with pytest.raises(MethodError, match="known methods: count, histogram"):
        check(["mean", name], {}, SIGNALS)


def test_free_combination_is_fine():
    check(["count", "min", "max", "mean", "variance", "std", "quantiles", "histogram", "last"],
          {"bins": [0, 1], "q": [0.5], "ddof": 1}, SIGNALS)


@pytest.mark.parametrize(
    ("methods", "reason"),
    [
        (["kmeans", "mean"], "kmeans is iterative and must be the only method"),
        (["mean", "kmeans"], "kmeans is iterative and must be the only method"),
        (["mean", "mean"], "named twice"),
        ([], "no method given"),
        ("mean", "must be a list of method names"),
    ],
)
def test_bad_method_lists(methods, reason):
    with pytest.raises(MethodError, match=reason):
        check(methods, {"k": 2}, SIGNALS)


@pytest.mark.parametrize(
    ("signals", "reason"),
    [([], "non-empty list"), ("SPEED", "non-empty list"), (["a", "a"], "distinct"), ([1], "distinct")],
)
def test_bad_signals(signals, reason):
    with pytest.raises(MethodError, match=reason):
        check(["count"], {}, signals)


BAD_PARAMS = [
    (["mean"], {"ddof": 1}, r"params \['ddof'\] are read by none of \['mean'\]"),
    (["quantiles"], {"qs": [0.5]}, r"params \['qs'\] are read by none"),
    (["quantiles"], {"q": [0.5, 1.5]}, r"must lie in \[0, 1\], got \[1.5\]"),
    (["quantiles"], {"q": 0.5}, "must be a non-empty list"),
    (["quantiles"], {"q": []}, "must be a non-empty list"),
    (["quantiles"], {"q": ["a"]}, "needs numbers"),
    (["quantiles"], {"q": [float("nan")]}, "needs finite numbers"),
    (["variance"], {"ddof": -1}, "'ddof' must be at least 0"),
    (["std"], {"ddof": True}, "'ddof' must be an integer, got bool"),
    (["std"], {"ddof": 1.0}, "'ddof' must be an integer, got float"),
    (["histogram"], {}, "param 'bins' is required"),
    (["histogram"], {"bins": [1.0]}, "needs at least 2"),
    (["histogram"], {"bins": [0, 2, 1]}, "strictly increasing"),
    (["histogram"], {"bins": [0, 1, 1]}, "strictly increasing"),
    (["histogram"], {"bins": [0, float("inf")]}, "finite"),
    (["histogram"], {"bins": 10}, "must be a list of edges"),
    (["histogram"], {"bins": {"count": 0, "range": [0, 1]}}, "'count' must be an integer from 1"),
    (["histogram"], {"bins": {"count": 2.0, "range": [0, 1]}}, "'count' must be an integer from 1"),
    (["histogram"], {"bins": {"count": 10**9, "range": [0, 1]}}, "'count' must be an integer from 1 to 100000"),
    (["histogram"], {"bins": {"count": 2, "range": [1, 1]}}, "lo < hi"),
    (["histogram"], {"bins": {"count": 2, "range": [0]}}, r"must be \[lo, hi\]"),
    (["histogram"], {"bins": {"SPEED": [0, 1]}}, "no bins for signal 'STEER_ANGLE'"),
    (["histogram"], {"bins": {"SPEED": [0, 1], "STEER_ANGLE": [0, 1], "RPM": [0, 1]}}, r"does not read: \['RPM'\]"),
    (["kmeans"], {}, "param 'k' .* is required"),
    (["kmeans"], {"k": 0}, "'k' must be at least 1"),
    (["kmeans"], {"k": "3"}, "'k' must be an integer"),
    (["kmeans"], {"k": 2, "init": [[0, 0]]}, "list of k=2 points"),
    (["kmeans"], {"k": 2, "init": [[0, 0], [1]]}, "same number of coordinates"),
    (["kmeans"], {"k": 1, "init": [[0, 0, 0]]}, "have 3 coordinates, but there are 2 features"),
    (["kmeans"], {"k": 1, "features": ["RPM"]}, r"does not read: \['RPM'\]"),
    (["kmeans"], {"k": 1, "features": []}, "non-empty list of signal names"),
    (["kmeans"], {"k": 1, "features": ["SPEED", "SPEED"]}, "names a signal twice"),
    (["kmeans"], {"k": 1, "max_points": 0}, "'max_points' must be at least 1"),
]


@pytest.mark.parametrize(("methods", "params", "reason"), BAD_PARAMS)
def test_bad_params_are_refused_with_a_reason(methods, params, reason):
    with pytest.raises(MethodError, match=reason):
        check(methods, params, SIGNALS)


def test_on_board_checks_params_too():
    # The vehicle must not trust that the server checked.
    window = {"SPEED": Series([0.0], [1.0])}
    with pytest.raises(MethodError, match="'bins' is required"):
        run_on_board(["histogram"], window, {}, None)


def test_malformed_partials_name_the_vehicle():
    good = run_on_board(["mean", "quantiles"], {"s": Series([0.0, 1.0], [1.0, 2.0])}, {}, None)
    bad = {"mean": {"s": {"n": -1, "sum": 3.0}}, "quantiles": good["quantiles"]}
    with pytest.raises(MethodError, match="mean: malformed partial from vehicle 'b'"):
        run_off_board(["mean", "quantiles"], {"a": good, "b": bad}, {}, None)
    with pytest.raises(MethodError, match="vehicle 'b' lack methods \\['quantiles'\\]"):
        run_off_board(["mean", "quantiles"], {"a": good, "b": {"mean": good["mean"]}}, {}, None)
    wrong = {"mean": good["mean"], "quantiles": {"s": {"values": np.array([1.0]), "counts": np.array([1, 2])}}}
    with pytest.raises(MethodError, match="quantiles: malformed partial from vehicle 'c'"):
        run_off_board(["mean", "quantiles"], {"a": good, "c": wrong}, {}, None)
    with pytest.raises(MethodError, match="malformed partial"):
        summarize(["mean"], {"mean": {"s": "nonsense"}})


def test_histogram_refuses_to_add_other_edges():
    window = {"s": Series([0.0, 1.0], [0.5, 1.5])}
    a = run_on_board(["histogram"], window, {"bins": [0, 1, 2]}, None)
    b = run_on_board(["histogram"], window, {"bins": [0, 1, 3]}, None)
    with pytest.raises(MethodError, match="other bin edges"):
        run_off_board(["histogram"], {"a": a, "b": b}, {"bins": [0, 1, 2]}, None)


def test_unsorted_quantile_partial_is_normalised():
    partial = {"quantiles": {"s": {"values": [3.0, 1.0, 3.0], "counts": [1, 1, 2], "q": [0.5]}}}
    assert summarize(["quantiles"], partial) == {"quantiles": {"s": {"0.5": 3.0}}}


def test_series_is_checked():
    with pytest.raises(ValueError, match="ascending"):
        Series([1.0, 0.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="as many timestamps"):
        Series([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="1-D"):
        Series([[1.0]], [[1.0]])
    s = Series([0, 1], [2, 3])
    assert s.t.dtype == np.float64 and s.v.dtype == np.float64 and len(s) == 2
