"""The SQLite store: idempotent results, values kept exactly, state across reopen."""

from __future__ import annotations

import struct

from oodida.server.store import Store
from oodida.wire.messages import AssignmentSpec, Result, WindowSpec
from oodida.wire.values import NDArray

SPEC = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=5), iterations=2, on_board=["mean"])


def test_a_result_delivered_twice_is_stored_once(tmp_path, store_factory):
    store = store_factory(tmp_path / "s.sqlite3")
    a = store.create_assignment(SPEC, ["v1"])
    store.open_iteration(a, 1, 0.0)
    r = Result(assignment=a, iteration=1, vehicle="v1", ok=True, code_hash="h", value={"mean": {"SPEED": {"n": 3}}})
    assert store.add_result(r) is True
    assert store.add_result(r) is False
    assert len(store.results(a, 1)) == 1


def test_arrays_and_floats_survive_storage_bit_for_bit(tmp_path, store_factory):
    store = store_factory(tmp_path / "s.sqlite3")
    a = store.create_assignment(SPEC, ["v1"])
    arr = NDArray("<f8", (3,), struct.pack("<3d", 0.1, float("nan"), -1e300))
    value = {"x": arr, "y": 1 / 3, "z": [1, "two", None, True]}
    store.add_result(Result(assignment=a, iteration=1, vehicle="v1", ok=True, code_hash="h", value=value))
    back = store.results(a, 1)[0].value
    assert back["x"] == arr and back["y"] == 1 / 3 and back["z"] == [1, "two", None, True]


def test_running_assignments_are_marked_interrupted_on_reopen(tmp_path, store_factory):
    path = tmp_path / "s.sqlite3"
    store = store_factory(path)
    a = store.create_assignment(SPEC, ["v1"])
    store.close()
    store = store_factory(path)
    assert store.interrupt_running("restarted") == [a]
    row = store.assignment(a)
    assert row is not None and row.state == "interrupted" and row.reason == "restarted"
    assert row.spec == SPEC


def test_late_results_are_kept_apart(tmp_path, store_factory):
    store = store_factory(tmp_path / "s.sqlite3")
    a = store.create_assignment(SPEC, ["v1", "v2"])
    store.add_result(Result(assignment=a, iteration=1, vehicle="v1", ok=True, code_hash="h"))
    store.add_result(Result(assignment=a, iteration=1, vehicle="v2", ok=True, code_hash="h"), late=True)
    assert store.late_vehicles(a, 1) == {"v2"}


def test_versions_deploys_acks_and_audit_are_kept_and_survive_reopen(tmp_path, store_factory):
    path = tmp_path / "s.sqlite3"
    store = store_factory(path)
    a = store.create_assignment(SPEC, ["v1", "v2"])
    store.add_module("h1", "m.py", "def on_board(w, p, s):\n    return 1\n")
    store.add_module("h1", "renamed.py", "ignored: the hash names the content")
    store.add_module("h2", "m.py", "def on_board(w, p, s):\n    return 2\n")
    store.add_deployment(a, "on_board", "h1", "submit", "ana", None)
    store.add_deployment(a, "on_board", "h2", "deploy", "bo", ["v2"])
    store.add_module_acks([(a, "on_board", "h2", "v2", False, "refused")])
    store.add_module_acks([
        (a, "on_board", "h2", "v2", True, None),  # the later answer wins
        (a, "on_board", "h1", "v1", True, None),
    ])
    store.open_iteration(a, 1, 0.0)
    store.close_iteration(a, 1, status="complete", missing=[], fleet=None, state=None, reason="r", closed=1.0,
                          code_hash="h1", set_aside={"v2": "h2"})
    store.audit("bo", "deploy", a, "on_board m.py h2 to v2")
    store.close()

    store = store_factory(path)
    assert store.module("h1") == ("m.py", "def on_board(w, p, s):\n    return 1\n")
    assert store.module("nope") is None
    rows = store.deployments(a)
    assert [(d.code_hash, d.kind, d.by, d.vehicles) for d in rows] == [
        ("h1", "submit", "ana", None), ("h2", "deploy", "bo", ["v2"]),
    ]
    assert store.module_acks(a) == {("on_board", "h1"): ["v1"], ("on_board", "h2"): ["v2"]}
    assert store.served(a) == {("on_board", "h1"): [1]}
    (it,) = store.iterations(a)
    assert it.code_hash == "h1" and it.set_aside == {"v2": "h2"} and it.off_board_hash is None
    assert [(r.who, r.action, r.assignment) for r in store.audit_log(a)] == [("bo", "deploy", a)]


def test_a_database_from_before_versions_gains_the_new_columns(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE iterations (assignment INTEGER NOT NULL, iteration INTEGER NOT NULL, status TEXT NOT NULL,"
        " started REAL NOT NULL, closed REAL, missing TEXT, fleet BLOB, state BLOB, reason TEXT,"
        " PRIMARY KEY (assignment, iteration));"
        "INSERT INTO iterations VALUES (1, 1, 'complete', 0.0, 1.0, '[]', NULL, NULL, 'old');"
    )
    db.commit()
    db.close()
    store = Store(path)
    (it,) = store.iterations(1)
    assert it.reason == "old" and it.code_hash is None and it.set_aside == {}
