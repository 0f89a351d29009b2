"""However the data are split over vehicles, the merged partials give the answer
over all the data: properties over random data and random splits."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from oodida.analytics import Series
from oodida.analytics.quantiles import q_key

from .helpers import fleet_run

# Quantised values (as a DBC scale makes them: many ties) mixed with arbitrary ones.
values = st.one_of(
    st.integers(-40, 40).map(lambda i: i * 0.25),
    st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False),
)


@st.composite
def split_data(draw, min_size=0):
    data = draw(st.lists(values, min_size=min_size, max_size=200))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    bounds = [0, *cuts, len(data)]
    fleet = {}
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        chunk = np.array(data[lo:hi], dtype=np.float64)
        fleet[f"v{i}"] = {"s": Series(np.arange(lo, hi, dtype=np.float64), chunk)}
    return np.array(data, dtype=np.float64), fleet


common = settings(max_examples=50, deadline=None)


@common
@given(split_data(), st.sampled_from([0, 1]), st.booleans())
def test_moments_merge(case, ddof, via_wire):
    data, fleet = case
    result, _, _ = fleet_run(["count", "min", "max", "mean", "variance", "std"], fleet, {"ddof": ddof},
                             via_wire=via_wire)
    assert result["count"]["s"] == data.size
    if data.size == 0:
        assert result["mean"]["s"] is None and result["min"]["s"] is None
        return
    assert result["min"]["s"] == data.min() and result["max"]["s"] == data.max()
    scale = float(np.max(np.abs(data))) or 1.0
    np.testing.assert_allclose(result["mean"]["s"], np.mean(data), rtol=1e-12, atol=1e-13 * scale)
    if data.size <= ddof:
        assert result["variance"]["s"] is None and result["std"]["s"] is None
        return
    atol = 1e-12 * scale**2
    np.testing.assert_allclose(result["variance"]["s"], np.var(data, ddof=ddof), rtol=1e-9, atol=atol)
    np.testing.assert_allclose(result["std"]["s"] ** 2, np.std(data, ddof=ddof) ** 2, rtol=1e-9, atol=atol)


@common
@given(split_data(min_size=1), st.lists(st.floats(0, 1), min_size=1, max_size=8), st.booleans())
def test_quantiles_merge_exactly(case, q, via_wire):
    data, fleet = case
    result, _, _ = fleet_run(["quantiles"], fleet, {"q": q}, via_wire=via_wire)
    expected = np.quantile(data, q)
    # Bit for bit, not approximately (a duplicate q keeps one key, same value).
    assert result["quantiles"]["s"] == {q_key(x): float(e) for x, e in zip(q, expected, strict=True)}


@common
@given(
    split_data(),
    st.lists(st.floats(-20, 20, allow_nan=False), min_size=2, max_size=12, unique=True).map(sorted),
    st.booleans(),
)
def test_histogram_merge(case, edges, via_wire):
    data, fleet = case
    result, _, _ = fleet_run(["histogram"], fleet, {"bins": edges}, via_wire=via_wire)
    got = result["histogram"]["s"]
    assert got["counts"] == np.histogram(data, bins=np.array(edges))[0].tolist()
    assert got["below"] == int(np.sum(data < edges[0]))
    assert got["above"] == int(np.sum(data > edges[-1]))
