"""numpy <-> wire conversion, both ways, and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from oodida.analytics import from_wire, to_wire
from oodida.wire.values import NDArray, check_value

ARRAYS = [
    np.arange(6, dtype=np.float64).reshape(2, 3),
    np.arange(5, dtype=np.int64),
    np.array([1, 2, 3], dtype=">i4"),  # big endian: travels little endian
    np.arange(10.0)[::3],  # not contiguous
    np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    np.empty((0, 3)),
    np.array(2.5),  # 0-d
    np.array([1, 2], dtype=np.uint16),
    np.array([-1, 2], dtype=np.int8),
    np.array([0.5], dtype=np.float32),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype.str}{a.shape}")
def test_arrays_round_trip(array):
    wired = to_wire(array)
    assert type(wired) is NDArray
    assert wired.dtype[0] in "<|"
    back = from_wire(wired)
    assert back.shape == array.shape
    assert back.dtype == array.dtype.newbyteorder("<")
    np.testing.assert_array_equal(back, array)
    assert not back.flags.writeable  # a view of the received bytes


def test_bools_travel_as_bytes():
    wired = to_wire(np.array([True, False, True]))
    assert wired.dtype == "|u1" and wired.data == b"\x01\x00\x01"


def test_nested_values():
    value = {
        "a": (1, np.float64(2.5), np.int32(3), np.bool_(True)),
        "b": [np.arange(2), {"c": None, "d": "x", "e": b"y"}],
    }
    wired = to_wire(value)
    check_value(wired)
    assert wired["a"] == [1, 2.5, 3, True]
    assert [type(x) for x in wired["a"]] == [int, float, int, bool]
    back = from_wire(wired)
    assert back["b"][1] == {"c": None, "d": "x", "e": b"y"}
    np.testing.assert_array_equal(back["b"][0], [0, 1])


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (np.array([1j]), "complex128"),
        (np.array(["a"]), "<U1"),
        (np.array([None]), "object"),
        (np.ones(2, dtype=np.longdouble), "float128"),
        (np.complex64(1), "complex64"),
        ({1: 2}, "of type int"),
        ({1, 2}, "type set"),
        ([object()], "type object"),
        (1 + 2j, "type complex"),
    ],
)
def test_non_plain_values_are_a_type_error_naming_the_type(value, named):
    if named == "float128" and np.dtype(np.longdouble).itemsize == 8:
        pytest.skip("long double is float64 on this platform")
    with pytest.raises(TypeError, match=named):
        to_wire(value)
