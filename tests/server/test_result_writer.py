"""Results stored in one transaction per pass of the event loop, and acknowledged only
once committed: a burst of answers is one commit, and a commit that fails leaves no
result acknowledged (the vehicles keep them and send them again)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from oodida.client.protocol import AnalystClient
from oodida.link import connect
from oodida.server.app import Server
from oodida.server.result_writer import ResultWriter
from oodida.server.store import Store
from oodida.wire import Role
from oodida.wire.messages import AssignmentSpec, Result, ResultAck, Task, WindowSpec
from tests.servers import AT, STATUS, VT, config, mean_partial

SPEC = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=5), iterations=1, on_board=["mean"])


def result(a: int, vehicle: str) -> Result:
    return Result(assignment=a, iteration=1, vehicle=vehicle, ok=True, code_hash="h", value=mean_partial(1, 2.0))


def refuse_vehicle(path, vehicle: str) -> None:
    """Make the database refuse one vehicle's results, as a full disk would refuse all."""
    db = sqlite3.connect(path)
    db.execute(
        f"CREATE TRIGGER refuse BEFORE INSERT ON results WHEN NEW.vehicle = '{vehicle}'"
        " BEGIN SELECT RAISE(ABORT, 'the disk says no'); END"
    )
    db.commit()
    db.close()


def allow_all(path) -> None:
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER refuse")
    db.commit()
    db.close()


def committed(path, a: int) -> set[str]:
    """What another connection sees: only committed rows."""
    db = sqlite3.connect(path)
    try:
        return {row[0] for row in db.execute("SELECT vehicle FROM results WHERE assignment = ?", (a,))}
    finally:
        db.close()


async def test_a_burst_is_one_transaction_and_each_add_returns_once_its_result_is_committed(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    a = store.create_assignment(SPEC, [f"v{i}" for i in range(100)])
    writer = ResultWriter(store)
    seen_at_return: dict[str, set[str]] = {}

    async def deliver(vehicle: str) -> bool:
        new = await writer.add(result(a, vehicle))
        seen_at_return[vehicle] = committed(path, a)
        return new

    outcomes = await asyncio.gather(*(deliver(f"v{i}") for i in range(100)), deliver("v7"))  # v7 twice
    assert writer.batches == 1 and writer.largest == 101
    assert outcomes[:100] == [True] * 100 and outcomes[100] is False  # the second v7 was a duplicate
    assert all(vehicle in seen for vehicle, seen in seen_at_return.items())
    assert len(store.results(a, 1)) == 100


async def test_a_failed_commit_stores_none_of_the_batch_and_every_waiter_hears_why(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    a = store.create_assignment(SPEC, ["v1", "v2", "v3"])
    refuse_vehicle(path, "v2")
    writer = ResultWriter(store)

    outcomes = await asyncio.gather(*(writer.add(result(a, v)) for v in ("v1", "v2", "v3")), return_exceptions=True)
    assert all(isinstance(o, sqlite3.IntegrityError) and "the disk says no" in str(o) for o in outcomes)
    assert committed(path, a) == set()  # v1 and v3 were in the same transaction: rolled back
    allow_all(path)

    async def again() -> list[bool]:
        return await asyncio.gather(*(writer.add(result(a, v)) for v in ("v1", "v2", "v3")))

    assert await again() == [True, True, True]
    assert committed(path, a) == {"v1", "v2", "v3"}


async def test_a_vehicle_whose_result_cannot_be_stored_gets_no_ack_and_its_resend_is_stored(tmp_path):
    """Nothing lost: no ResultAck before the commit, so the vehicle keeps its result
    (the agent's outbox) and sends it again on its next connection."""

    server = Server(config(tmp_path))
    await server.start()
    analyst = None
    channels = []
    try:
        channel, _ = await connect("127.0.0.1", server.port, role=Role.VEHICLE, identity="v1", secret=VT)
        channels.append(channel)
        await channel.send(STATUS)
        analyst = await AnalystClient.connect("127.0.0.1", server.port, AT, identity="analyst")
        submitted = await analyst.submit(
            AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1, kind="latest"), iterations=1,
                           on_board=["mean"], deadline=30.0)
        )
        task = await channel.recv()
        assert isinstance(task, Task)
        refuse_vehicle(server.config.database, "v1")
        answer = result(submitted.assignment, "v1")
        await channel.send(answer)
        with pytest.raises(Exception) as ended:  # the server closes the connection, no ack
            while True:
                message = await channel.recv()
                assert not isinstance(message, ResultAck), "acknowledged a result that was not stored"
        assert "closed" in str(ended.value)
        assert committed(server.config.database, submitted.assignment) == set()
        allow_all(server.config.database)
        channel, _ = await connect("127.0.0.1", server.port, role=Role.VEHICLE, identity="v1", secret=VT)
        channels.append(channel)
        await channel.send(STATUS)
        await channel.send(answer)  # what the agent's outbox does on reconnecting
        while not isinstance(message := await channel.recv(), ResultAck):
            assert isinstance(message, Task)  # the open iteration's task again, on reconnect
        assert committed(server.config.database, submitted.assignment) == {"v1"}
        reports = [item async for item in analyst.results(submitted.assignment, follow=True)]
        assert reports[0].status == "complete" and reports[-1].state == "done"
    finally:
        if analyst is not None:
            await analyst.close()
        for c in channels:
            await c.close()
        await server.stop()


def test_result_rows_for_reports_are_the_stored_results_with_their_late_flag(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    a = store.create_assignment(SPEC, ["v1", "v2", "v3"])
    failed = Result(assignment=a, iteration=1, vehicle="v3", ok=False, code_hash="h", error="no data",
                    flags=["NaN in x"])
    store.add_results([(result(a, "v2"), True), (result(a, "v1"), False), (failed, False)])
    rows = store.result_rows(a, 1)
    assert [r.vehicle for r in rows] == ["v1", "v2", "v3"]  # ordered, as results() is
    assert [r.late for r in rows] == [False, True, False]
    for row, full in zip(rows, store.results(a, 1), strict=True):
        assert (row.ok, row.value, row.error, row.code_hash, row.samples, row.flags) == (
            full.ok, full.value, full.error, full.code_hash, full.samples, full.flags)
