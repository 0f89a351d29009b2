"""One counting rule: what the sandbox's result check lets out, the pipe, the agent's
Result, the server's frame scan and its value check all accept; what it refuses is
"result too large" with the reason, inside the call. The cases of issue 11, each with
its exact outcome."""

from __future__ import annotations

import numpy as np
import pytest

from oodida.analytics.arrays import to_wire
from oodida.sandbox import protocol
from oodida.sandbox.errors import Rule, Violation
from oodida.sandbox.results import check_result
from oodida.wire.codec import MAX_ITEMS as FRAME_ITEMS
from oodida.wire.codec import decode_payload, encode_payload
from oodida.wire.errors import ValidationError
from oodida.wire.messages import Result
from oodida.wire.scan import items_over
from oodida.wire.values import MAX_ITEMS, NDArray, array_items, check_value

HASH = "a" * 64


def through_every_reader(value):
    """The value's path after the check: pipe (encode, scan, decode), the agent's
    Result, the network frame (scan, decode), as the server reads it."""
    checked, _ = check_result(value)
    frame = protocol.encode({"ok": True, "value": checked, "seq": 1})
    reply = protocol.decode(frame[protocol.HEADER.size:])
    result = Result(assignment=1, iteration=1, vehicle="car-1", ok=True, code_hash=HASH, value=to_wire(reply["value"]))
    payload = encode_payload(result)
    assert not items_over(payload, FRAME_ITEMS)
    return decode_payload(payload)


def refused(value) -> str:
    with pytest.raises(Violation) as exc:
        check_result(value)
    assert exc.value.rule is Rule.RESULT_TOO_LARGE
    return exc.value.message


def test_360000_zero_d_arrays_are_refused_by_the_check_at_its_budget():
    message = refused([np.zeros((), np.uint8)] * 360000)
    # five CBOR items each (tag 40, [shape, data], shape, tag, bytes): refused at the 200,000th
    assert message == f"the result has more than {MAX_ITEMS} items (at $[199999])"


def test_a_9_dimensional_array_is_refused_by_the_check_not_by_the_pipe():
    assert refused({"a": np.zeros((1,) * 9)}) == "an array of 9 dimensions at $.a; at most 8 can be sent"
    assert through_every_reader({"a": np.zeros((1, 2) * 4)}).value["a"].shape == (1, 2) * 4


def test_560000_keys_are_counted_in_the_check():
    assert refused({str(i): 0 for i in range(560000)}) == f"the result has more than {MAX_ITEMS} items (at $['499999'])"


def test_a_zero_size_array_with_huge_dimensions_is_refused():
    assert refused(np.zeros((10**9, 0))) == (
        f"an array of shape (1000000000, 0) at $ counts as 1000000007 items, more than the {MAX_ITEMS} "
        "a result may have")
    assert "counts as" in refused({"x": np.zeros((1000, 1000, 1000, 0))})
    # and a peer that forges one (a compromised agent) is refused by the same rule
    with pytest.raises(ValidationError, match="more than 1000000 items"):
        check_value({"x": NDArray("<f8", (10**9, 0), b"")})


def test_an_empty_matrix_whose_rows_are_few_is_fine_everywhere():
    got = through_every_reader({"e": np.zeros((3, 0)), "z": np.zeros((0, 10**9))})
    assert got.value["e"].shape == (3, 0) and got.value["z"].shape == (0, 10**9)


@pytest.mark.parametrize("value", [
    [np.zeros((), np.uint8)] * 199_990,  # 5 items each: just inside the budget
    {str(i): 0 for i in range(499_990)},  # 2 each
    [np.ones(1)] * 333_000,  # 2 each, plus one per 64 elements (none)
    [np.zeros((2, 0))] * 99_990,  # 7 + 2 rows each
    [[1, 2, 3]] * 249_990,  # 4 each
])
def test_what_the_check_lets_out_every_reader_accepts(value):
    through_every_reader(value)


@pytest.mark.parametrize("value", [
    [np.zeros((), np.uint8)] * 200_001,
    {str(i): 0 for i in range(500_001)},
    [np.zeros((2, 0))] * 111_200,
    [[1, 2, 3]] * 250_001,
])
def test_just_past_the_budget_the_check_refuses(value):
    refused(value)


def test_the_charge_of_an_array_follows_its_shape():
    assert array_items((10,)) == 2  # tag and bytes
    assert array_items((640,)) == 12  # and one per 64 elements
    assert array_items(()) == 5  # tag 40, [shape, data], shape, tag, bytes
    assert array_items((3, 4)) == 7 + 3  # two dimensions, three rows
    assert array_items((10**9, 0)) == 7 + 10**9
    assert array_items((0, 10**9)) == 7


def test_the_pipe_counts_as_the_network_counts():
    body = protocol.encode({"v": [np.zeros((), np.uint8)] * 10, "k": {"a": 1}})[protocol.HEADER.size:]
    assert protocol.scan(body) == 1 + 1 + 1 + 10 * 5 + 1 + 1 + 1 + 1
    assert not items_over(body, protocol.scan(body)) and items_over(body, protocol.scan(body) - 1)
