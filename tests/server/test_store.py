"""The SQLite store: idempotent results, values kept exactly, state across reopen."""

from __future__ import annotations

import struct

from server.store import Store
from wire.messages import AssignmentSpec, Result, WindowSpec
from wire.values import NDArray

SPEC = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=5), iterations=2, on_board=["mean"])


def test_a_result_delivered_twice_is_stored_once(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    a = store.create_assignment(SPEC, ["v1"])
    store.open_iteration(a, 1, 0.0)
    r = Result(assignment=a, iteration=1, vehicle="v1", ok=True, code_hash="h", value={"mean": {"SPEED": {"n": 3}}})
    assert store.add_result(r) is True
    assert store.add_result(r) is False
    assert len(store.results(a, 1)) == 1


def test_arrays_and_floats_survive_storage_bit_for_bit(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    a = store.create_assignment(SPEC, ["v1"])
    arr = NDArray("<f8", (3,), struct.pack("<3d", 0.1, float("nan"), -1e300))
    value = {"x": arr, "y": 1 / 3, "z": [1, "two", None, True]}
    store.add_result(Result(assignment=a, iteration=1, vehicle="v1", ok=True, code_hash="h", value=value))
    back = store.results(a, 1)[0].value
    assert back["x"] == arr and back["y"] == 1 / 3 and back["z"] == [1, "two", None, True]


def test_running_assignments_are_marked_interrupted_on_reopen(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    a = store.create_assignment(SPEC, ["v1"])
    store.close()
    store = Store(path)
    assert store.interrupt_running("restarted") == [a]
    row = store.assignment(a)
    assert row is not None and row.state == "interrupted" and row.reason == "restarted"
    assert row.spec == SPEC


def test_late_results_are_kept_apart(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    a = store.create_assignment(SPEC, ["v1", "v2"])
    store.add_result(Result(assignment=a, iteration=1, vehicle="v1", ok=True, code_hash="h"))
    store.add_result(Result(assignment=a, iteration=1, vehicle="v2", ok=True, code_hash="h"), late=True)
    assert store.late_vehicles(a, 1) == {"v2"}
