"""check_result: what a module may return, by exact type, within bounds, flagged."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oodida.sandbox.errors import Rule, Violation
from oodida.sandbox.results import MAX_FLAGS, check_result


def refused(value, rule=Rule.DISALLOWED_RETURN, **limits) -> str:
    with pytest.raises(Violation) as err:
        check_result(value, **limits)
    assert err.value.rule is rule, err.value
    return err.value.message


def test_plain_data_comes_back_as_a_plain_copy():
    inner = [1, 2]
    value = {"a": None, "b": True, "c": -3, "d": 2.5, "e": "text", "f": b"\x00\xff", "g": (1, (2, 3)),
             "h": inner, "i": {"nested": {"deep": [inner]}}}
    checked, flags = check_result(value)
    assert flags == []
    assert checked == {"a": None, "b": True, "c": -3, "d": 2.5, "e": "text", "f": b"\x00\xff", "g": [1, [2, 3]],
                       "h": [1, 2], "i": {"nested": {"deep": [[1, 2]]}}}
    assert type(checked["g"]) is list and type(checked["b"]) is bool
    inner.append(3)  # the module's objects and the result are separate from here on
    assert checked["h"] == [1, 2]


def test_numpy_scalars_become_python_numbers():
    checked, _ = check_result([np.float64(1.5), np.float32(2.0), np.int64(-3), np.uint8(4), np.bool_(True),
                               np.float16(0.5), np.uint64(2**64 - 1)])
    assert checked == [1.5, 2.0, -3, 4, True, 0.5, 2**64 - 1]
    assert [type(x) for x in checked] == [float, float, int, int, bool, float, int]


def test_numeric_arrays_are_copied_contiguous_and_little_endian():
    a = np.arange(12.0).reshape(3, 4)
    checked, flags = check_result({"a": a, "strided": a[:, ::2], "big": np.arange(3, dtype=">i4"),
                                   "scalar": np.array(7.0), "bools": np.array([True, False]),
                                   "empty": np.zeros((0, 3))})
    assert flags == []
    assert np.array_equal(checked["a"], a) and checked["a"] is not a
    assert checked["strided"].flags.c_contiguous and np.array_equal(checked["strided"], a[:, ::2])
    assert checked["big"].dtype == np.dtype("<i4") and checked["big"].tolist() == [0, 1, 2]
    assert checked["scalar"].shape == () and checked["scalar"] == 7.0
    assert checked["bools"].dtype == np.bool_ and checked["empty"].shape == (0, 3)
    a[0, 0] = 99.0
    assert checked["a"][0, 0] == 0.0
    frozen = np.arange(3.0)
    frozen.flags.writeable = False
    assert check_result(frozen)[0].flags.writeable  # a private copy, even of a read-only window


def test_nan_and_infinities_are_kept_and_flagged_with_their_path():
    value = {"mean": {"SPEED": math.nan}, "x": [1.0, -math.inf, math.inf], "odd key": math.nan,
             "arr": np.array([np.nan, 1.0, np.inf, -np.inf, np.nan]), "f32": np.float32("nan")}
    checked, flags = check_result(value)
    assert math.isnan(checked["mean"]["SPEED"]) and checked["x"][1] == -math.inf
    assert np.isnan(checked["arr"][0]) and checked["arr"][2] == np.inf
    assert flags == ["nan at $.mean.SPEED", "-inf at $.x[1]", "inf at $.x[2]", "nan at $['odd key']",
                     "2 nan at $.arr", "2 inf at $.arr", "nan at $.f32"]
    assert check_result({"x": math.nan})[1] == ["nan at $.x"]  # what the analyst's report shows


def test_flags_are_capped():
    _, flags = check_result([math.nan] * (MAX_FLAGS + 50))
    assert len(flags) == MAX_FLAGS + 1 and flags[-1] == "... and 50 more non-finite values"


class MyInt(int):
    pass


class MyStr(str):
    pass


class MyFloat(float):
    pass


class MyList(list):
    pass


class Sneaky(dict):
    def __eq__(self, other):  # would run in the agent when it compares
        raise RuntimeError("ran code")

    __hash__ = None  # type: ignore[assignment]


@pytest.mark.parametrize("value, what", [
    (MyInt(1), "MyInt"), (MyStr("x"), "MyStr"), (MyFloat(1.0), "MyFloat"), (MyList(), "MyList"),
    (Sneaky(), "Sneaky"), ({"k": Sneaky()}, "Sneaky at $.k"), ([1, {"x": (2, MyStr("y"))}], "MyStr at $[1].x[1]"),
    (object(), "object"), (lambda: 1, "function"), ((x for x in ()), "generator"), ({1, 2}, "set"),
    (frozenset(), "frozenset"), (1j, "complex"), (bytearray(b"x"), "bytearray"), (range(3), "range"),
    (ValueError("x"), "ValueError"), (np.str_("x"), "str_"), (np.bytes_(b"x"), "bytes_"),
    (np.longdouble(1), "longdouble"), (np.complex128(1), "complex128"), (np.datetime64("2020-01-01"), "datetime64"),
    (memoryview(b"x"), "memoryview"), (type, "type"), (np.float64, "type"),
])
def test_only_exact_plain_types_are_allowed(value, what):
    message = refused(value)
    assert f"type {what}" in message
    assert "return None, bool, int, float, str, bytes, list, tuple, dict" in message


@pytest.mark.parametrize("array, dtype", [
    (np.array([1, "a"], dtype=object), "object"), (np.array(["a"]), "<U1"), (np.array([b"a"]), "|S1"),
    (np.zeros(2, dtype="i4,i4"), "("), (np.zeros(2, dtype="V8"), "|V8"), (np.array(["2020-01-01"], dtype="M8[D]"),
                                                                           "datetime64"),
    (np.array([1], dtype="m8[s]"), "timedelta64"), (np.array([1j]), "complex128"),
])
def test_only_numeric_arrays_are_allowed(array, dtype):
    assert dtype in refused({"a": array})


def test_array_subclasses_are_refused():
    with pytest.warns(PendingDeprecationWarning):
        matrix = np.asmatrix(np.eye(2))
    assert "type matrix" in refused(matrix)
    assert "type MaskedArray" in refused(np.ma.masked_array([1.0, 2.0]))
    assert "type recarray" in refused(np.rec.fromarrays([np.zeros(2)]))


def test_dict_keys_must_be_exact_str():
    assert "dict key of type int" in refused({1: "a"})
    assert "dict key of type MyStr" in refused({MyStr("a"): 1})
    assert "dict key of type tuple" in refused({"ok": {(1, 2): 3}})
    assert "unpaired surrogates" in refused({"\ud800": 1})
    assert "unpaired surrogates" in refused(["ok", "\udfff"])
    assert check_result({"ünïcödé": "✓"})[0] == {"ünïcödé": "✓"}


def test_integers_must_fit_in_64_bits():
    assert check_result([2**64 - 1, -(2**64)])[0] == [2**64 - 1, -(2**64)]
    for big in (2**64, -(2**64) - 1, 10**5000):
        assert "does not fit in 64 bits" in refused(big, Rule.RESULT_TOO_LARGE)


def test_depth_is_bounded():
    x: list = []
    for _ in range(31):
        x = [x]
    check_result(x)  # 32 lists, one inside the other
    assert "deeper than 32" in refused([x], Rule.RESULT_TOO_LARGE)
    loop: list = []
    loop.append(loop)
    assert "deeper than 32" in refused(loop, Rule.RESULT_TOO_LARGE)
    d: dict = {}
    d["d"] = d
    assert "deeper than 32" in refused(d, Rule.RESULT_TOO_LARGE)
    assert "deeper than 3" in refused([[[[1]]]], Rule.RESULT_TOO_LARGE, max_depth=3)


def test_items_and_bytes_are_bounded():
    check_result(list(range(999_999)))
    assert "more than 1000000 items" in refused(list(range(1_000_001)), Rule.RESULT_TOO_LARGE)
    assert "more than 10 items" in refused({"a": list(range(20))}, Rule.RESULT_TOO_LARGE, max_items=10)
    s = "x" * 2**20
    assert "more than 16777216 bytes" in refused([s] * 17, Rule.RESULT_TOO_LARGE)  # each reference is sent
    assert "bytes" in refused("ü" * 5 * 2**20, Rule.RESULT_TOO_LARGE)  # counted as UTF-8 could take it
    assert "more than 1000 bytes" in refused(b"x" * 2000, Rule.RESULT_TOO_LARGE, max_bytes=1000)
    assert "more than 1000 bytes" in refused({"k" * 2000: 1}, Rule.RESULT_TOO_LARGE, max_bytes=1000)


def test_a_huge_array_is_refused_before_it_is_copied():
    huge = np.broadcast_to(np.zeros(1), (10**10,))  # 80 GB as numpy counts it, a few bytes in memory
    assert "bytes" in refused({"x": huge}, Rule.RESULT_TOO_LARGE)
    assert "bytes" in refused(np.zeros(3 * 10**6), Rule.RESULT_TOO_LARGE)


def test_the_path_in_messages_says_where():
    message = refused({"vehicles": [{"id": "a"}, {"id": object()}]})
    assert "at $.vehicles[1].id" in message
    long_key = "k" * 100
    assert "kkk..." in refused({long_key: object()})


plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


def as_lists(v):
    if isinstance(v, (list, tuple)):
        return [as_lists(x) for x in v]
    if isinstance(v, dict):
        return {k: as_lists(x) for k, x in v.items()}
    return v


@given(plain)
@settings(max_examples=200, deadline=None)
def test_any_plain_value_comes_back_equal_with_tuples_as_lists(value):
    checked, flags = check_result(value)
    assert checked == as_lists(value) and flags == []
