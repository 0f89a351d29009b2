"""An assignment's lifecycle in the store goes through `wire.states.ASSIGNMENT`: every
end the table allows from running is stored and read back as that state, an ended
assignment keeps its first end, and the rows hold the same strings as before."""

from __future__ import annotations

import sqlite3

import pytest

from oodida.server.store import Store
from oodida.wire.messages import AssignmentSpec, WindowSpec
from oodida.wire.states import ASSIGNMENT, AssignmentEvent, AssignmentState

SPEC = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=5), iterations=2, on_board=["mean"])


def stored_state(path, assignment: int) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT state FROM assignments WHERE id = ?", (assignment,)).fetchone()[0]


@pytest.mark.parametrize("event", list(AssignmentEvent))
def test_every_end_the_table_allows_is_stored_and_read_back_as_its_state(tmp_path, event: AssignmentEvent) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    a = store.create_assignment(SPEC, ["v1"])
    row = store.assignment(a)
    assert row is not None and row.state is AssignmentState.RUNNING
    assert store.running_assignments() == [a]
    final = ASSIGNMENT.next(AssignmentState.RUNNING, event)
    store.finish_assignment(a, final, "why")
    row = store.assignment(a)
    assert row is not None and row.state is final and row.reason == "why" and row.finished is not None
    assert store.running_assignments() == []
    store.close()
    assert stored_state(path, a) == final.value  # the column holds the plain string, as before
    assert type(stored_state(path, a)) is str


def test_an_ended_assignment_keeps_its_first_end(tmp_path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    a = store.create_assignment(SPEC, ["v1"])
    store.finish_assignment(a, AssignmentState.CANCELLED, "the analyst cancelled it")
    store.finish_assignment(a, AssignmentState.INTERRUPTED, "the server stopped")
    row = store.assignment(a)
    assert row is not None and row.state is AssignmentState.CANCELLED and row.reason == "the analyst cancelled it"
    assert ASSIGNMENT.final(row.state)


def test_a_restart_interrupts_only_the_running_ones(tmp_path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    running, done = store.create_assignment(SPEC, ["v1"]), store.create_assignment(SPEC, ["v1"])
    store.finish_assignment(done, AssignmentState.DONE)
    assert store.interrupt_running("restarted") == [running]
    states = {row.id: row.state for row in store.assignments()}
    assert states == {running: AssignmentState.INTERRUPTED, done: AssignmentState.DONE}
