"""`registry.summarizer`, the per-report form of `summarize`, gives the same summaries."""

from __future__ import annotations

import numpy as np
import pytest

from oodida.analytics import registry
from oodida.analytics.arrays import from_wire, to_wire
from oodida.analytics.base import MethodError
from oodida.analytics.series import Series
from oodida.wire.codec import decode_value, encode_value

METHODS = ["count", "min", "max", "mean", "variance", "std", "quantiles", "histogram", "last"]


def test_summarizer_equals_summarize_on_partials_that_crossed_the_wire():
    rng = np.random.default_rng(3)
    window = {"SPEED": Series(np.arange(200) * 0.01, rng.normal(50, 10, 200)), "EMPTY": Series.empty()}
    summarize = registry.summarizer(METHODS)
    params = {"bins": {"count": 8, "range": [0.0, 100.0]}, "q": [0.1, 0.5, 0.9]}
    registry.check(METHODS, params, list(window))
    partial = from_wire(decode_value(encode_value(to_wire(registry.run_on_board(METHODS, window, params, None)))))
    assert any(isinstance(v, np.ndarray) for v in partial["histogram"]["SPEED"].values())  # arrays crossed too
    expected = registry.summarize(METHODS, partial)
    got = summarize(partial)
    assert set(got) == set(METHODS)
    assert repr(to_wire(got)) == repr(to_wire(expected))


def test_a_partial_lacking_a_method_is_refused_with_its_name():
    with pytest.raises(MethodError, match=r"lacks methods \['max'\]"):
        registry.summarizer(["min", "max"])({"min": {"SPEED": 1.0}})
