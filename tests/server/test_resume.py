"""A server that stops mid-assignment, and the next one on the same database.

Real `Server` objects on loopback, a real SQLite file, vehicles played by hand (so the
test decides who answered before the stop). A clean stop is `Server.stop()`; a hard
kill is the database files copied while the first server runs, which is what a
SIGKILL leaves on disk (WAL: every committed transaction, nothing else), and the
second server starts on that copy.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from oodida.client.protocol import AnalystClient
from oodida.sandbox.supervisor import source_hash
from oodida.server.app import Server
from oodida.server.store import Store
from oodida.wire.messages import (
    AssignmentSpec,
    LoadModule,
    Message,
    ModuleAck,
    ModuleSource,
    Result,
    ResultAck,
    Task,
    WindowSpec,
)
from tests.helpers import eventually
from tests.servers import AT, mean_partial, vehicle


async def next_of(channel, kind: type[Message], timeout: float = 10.0) -> Message:
    """The next message of `kind` the server sends this peer (others are skipped)."""
    async def read() -> Message:
        while True:
            message = await channel.recv()
            if isinstance(message, kind):
                return message
    return await asyncio.wait_for(read(), timeout)


async def answer(channel, vehicle: str, task: Task | tuple[int, int], value, code_hash: str = "h") -> None:
    """Answer a task (or an (assignment, iteration)) and wait for the acknowledgement:
    the result is then stored."""
    key = (task.assignment, task.iteration) if isinstance(task, Task) else task
    await channel.send(
        Result(assignment=key[0], iteration=key[1], vehicle=vehicle, ok=True, code_hash=code_hash, value=value)
    )
    ack = await next_of(channel, ResultAck)
    assert (ack.assignment, ack.iteration) == key


def crash_copy(src: Path, dst: Path) -> None:
    """The database files as a SIGKILL would leave them now: main file and WAL."""
    dst.mkdir()
    for suffix in ("", "-wal"):
        f = src / f"server.sqlite3{suffix}"
        if f.exists():
            shutil.copy(f, dst / f.name)


async def open_iteration(server: Server, assignment: int, timeout: float = 10.0):
    """The resumed runner's open iteration, once its task has run that far."""
    runner = server.runners[assignment]
    await eventually(lambda: runner.current is not None, timeout, what="the resumed runner to open an iteration")
    return runner, runner.current


MEAN = AssignmentSpec(
    signals=["SPEED"], window=WindowSpec(amount=1, kind="latest"), iterations=3, on_board=["mean"], deadline=60.0
)


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_the_open_iteration_is_reopened_with_its_number_and_answers_and_the_rest_follows(
        tmp_path, how, start_server):
    a_server = await start_server(tmp_path)
    v1, v2 = await vehicle(a_server, "v1"), await vehicle(a_server, "v2")
    analyst = await AnalystClient.connect("127.0.0.1", a_server.port, AT, identity="analyst")
    assignment = (await analyst.submit(MEAN)).assignment
    await analyst.close()
    for channel, name, n, total in ((v1, "v1", 2, 10.0), (v2, "v2", 3, 30.0)):
        task = await next_of(channel, Task)
        assert task.iteration == 1
        await answer(channel, name, task, mean_partial(n, total))
    task = await next_of(v1, Task)
    assert task.iteration == 2
    await answer(v1, "v1", task, mean_partial(1, 7.0))  # v1 answers iteration 2, v2 does not yet
    if how == "kill":
        crash_copy(tmp_path, tmp_path / "after-kill")
        await a_server.stop()
        where = tmp_path / "after-kill"
    else:
        await a_server.stop()
        where = tmp_path
    left = Store(where / "server.sqlite3")
    try:
        row = left.assignment(assignment)
        assert row is not None and row.state == "running"  # stopping the server did not end it
    finally:
        left.close()

    b_server = await start_server(where)
    runner, it = await open_iteration(b_server, assignment)
    assert it.number == 2 and runner.completed == 1
    assert set(it.answers) == {"v1"} and it.answers["v1"].value == mean_partial(1, 7.0)
    assert it.deadline_at - time.monotonic() > 50  # a full deadline from the resume
    assert runner.task_for("v1") is None  # v1 answered: not asked again
    assert runner.task_for("v2").iteration == 2
    audit = [r for r in b_server.store.audit_log(assignment) if r.action == "resumed"]
    assert len(audit) == 1 and "iteration 2 reopened with 1 of 2 answers" in audit[0].detail

    v1, v2 = await vehicle(b_server, "v1"), await vehicle(b_server, "v2")
    task = await next_of(v2, Task)
    assert task.iteration == 2  # the reopened iteration's task, sent on reconnect
    # v1 never saw its acknowledgement (say): it resends, and it is stored once
    await answer(v1, "v1", (assignment, 2), mean_partial(1, 7.0))
    await answer(v2, "v2", task, mean_partial(1, 9.0))
    for channel, name in ((v1, "v1"), (v2, "v2")):
        task = await next_of(channel, Task)
        assert task.iteration == 3  # v1 was not asked for iteration 2 again
        await answer(channel, name, task, mean_partial(1, 1.0))

    analyst = await AnalystClient.connect("127.0.0.1", b_server.port, AT, identity="analyst")
    reports = [r async for r in analyst.results(assignment, follow=True)]
    await analyst.close()
    *iterations, end = reports
    assert end.state == "done"
    assert [r.iteration for r in iterations] == [1, 2, 3]
    assert all(r.status == "complete" for r in iterations)
    assert [r.fleet["mean"]["SPEED"] for r in iterations] == pytest.approx([40.0 / 5, 16.0 / 2, 1.0])
    assert [r.vehicle for r in b_server.store.results(assignment, 2)] == ["v1", "v2"]


async def test_a_server_down_longer_than_the_deadline_does_not_fail_the_reopened_iteration(tmp_path, start_server):
    """The reopened iteration's deadline is a full one from the resume: the vehicles
    could not answer while no server listened."""
    spec = AssignmentSpec(
        signals=["SPEED"], window=WindowSpec(amount=1, kind="latest"), iterations=1, on_board=["mean"], deadline=2.0
    )

    a_server = await start_server(tmp_path)
    v1, v2 = await vehicle(a_server, "v1"), await vehicle(a_server, "v2")
    analyst = await AnalystClient.connect("127.0.0.1", a_server.port, AT, identity="analyst")
    assignment = (await analyst.submit(spec)).assignment
    await analyst.close()
    await answer(v1, "v1", await next_of(v1, Task), mean_partial(1, 4.0))
    await a_server.stop()
    await asyncio.sleep(3.0)  # down for longer than the deadline
    b_server = await start_server(tmp_path)
    v2 = await vehicle(b_server, "v2")
    await answer(v2, "v2", await next_of(v2, Task), mean_partial(1, 6.0))
    analyst = await AnalystClient.connect("127.0.0.1", b_server.port, AT, identity="analyst")
    report, end = [r async for r in analyst.results(assignment, follow=True)]
    await analyst.close()
    assert report.status == "complete" and report.fleet["mean"]["SPEED"] == 5.0
    assert end.state == "done"


def module(name: str, source: str) -> ModuleSource:
    return ModuleSource(name=name, source=source)


ON1 = module("on1.py", "def on_board(window, params, state):\n    return 1\n")
ON2 = module("on2.py", "def on_board(window, params, state):\n    return 2\n")
OFF1 = module(
    "off1.py",
    "def off_board(results, params, state):\n"
    "    return {'off': 1, 'round': (0 if state is None else state['round']) + 1}\n",
)
OFF2 = module(
    "off2.py",
    "def off_board(results, params, state):\n"
    "    return {'off': 2, 'round': state['round'] + 1, 'migrated': state['migrated']}\n"
    "\n"
    "def migrate(old_state):\n"
    "    return {'round': old_state['round'] * 100, 'migrated': True}\n",
)
H = {m.name: source_hash(m.source) for m in (ON1, ON2, OFF1, OFF2)}


async def acknowledge_loads(channel, count: int) -> list[LoadModule]:
    loads = []
    for _ in range(count):
        load = await next_of(channel, LoadModule)
        await channel.send(ModuleAck(assignment=load.assignment, code_hash=load.code_hash, ok=True))
        loads.append(load)
    return loads


@pytest.mark.timeout(90)
async def test_versions_in_force_pending_and_acknowledged_come_back_as_they_were(tmp_path, start_server):
    """Deploys during the open iteration: the off-board one waits for the next boundary
    (and its migrate with it), the on-board one to v1 only is acknowledged. After the
    restart the reopened iteration keeps the versions it started with, the next one
    switches."""
    spec = AssignmentSpec(
        signals=["SPEED"], window=WindowSpec(amount=1, kind="latest"), iterations=2, deadline=60.0,
        on_board_module=ON1, off_board_module=OFF1,
    )

    a_server = await start_server(tmp_path)
    v1, v2 = await vehicle(a_server, "v1"), await vehicle(a_server, "v2")
    analyst = await AnalystClient.connect("127.0.0.1", a_server.port, AT, identity="analyst")
    assignment = (await analyst.submit(spec)).assignment
    await acknowledge_loads(v1, 1)
    await acknowledge_loads(v2, 1)
    first = await next_of(v1, Task)
    assert first.iteration == 1 and first.module_hash == H["on1.py"]

    async def ack_v1() -> None:
        await acknowledge_loads(v1, 1)

    acking = asyncio.create_task(ack_v1())
    replies = [r async for r in analyst.deploy(assignment=assignment, side="on_board", module=ON2, vehicles=["v1"])]
    await acking
    assert replies[-1].complete
    replies = [r async for r in analyst.deploy(assignment=assignment, side="off_board", module=OFF2)]
    assert replies[-1].complete
    await analyst.close()
    await a_server.stop()

    b_server = await start_server(tmp_path)
    runner, it = await open_iteration(b_server, assignment)
    v = runner.versions
    assert it.number == 1 and not it.answers
    assert v.target == {"v1": H["on2.py"], "v2": H["on1.py"]}
    assert v.acked == {"v1": H["on2.py"], "v2": H["on1.py"]}
    assert (v.off_board, v.off_board_next) == (H["off1.py"], H["off2.py"])
    assert v.newest_first == [H["off2.py"], H["on2.py"], H["off1.py"], H["on1.py"]]
    assert runner.current_off_board == H["off1.py"]
    assert {runner.task_for(x).module_hash for x in ("v1", "v2")} == {H["on1.py"]}  # as first sent

    v1, v2 = await vehicle(b_server, "v1"), await vehicle(b_server, "v2")
    assert [load.code_hash for load in await acknowledge_loads(v1, 1)] == [H["on2.py"]]
    assert [load.code_hash for load in await acknowledge_loads(v2, 1)] == [H["on1.py"]]
    for channel, name in ((v1, "v1"), (v2, "v2")):
        task = await next_of(channel, Task)
        assert task.iteration == 1 and task.module_hash == H["on1.py"]
        await answer(channel, name, task, 1, code_hash=H["on1.py"])
    second = {}
    for channel, name, version in ((v1, "v1", "on2.py"), (v2, "v2", "on1.py")):
        task = second[name] = await next_of(channel, Task)
        assert task.iteration == 2 and task.module_hash == H[version]
        assert task.state == {"round": 100, "migrated": True}  # OFF2's migrate ran at the boundary
    await answer(v1, "v1", second["v1"], 2, code_hash=H["on2.py"])
    await answer(v2, "v2", second["v2"], 1, code_hash=H["on1.py"])

    analyst = await AnalystClient.connect("127.0.0.1", b_server.port, AT, identity="analyst")
    *reports, end = [r async for r in analyst.results(assignment, follow=True)]
    await analyst.close()
    assert end.state == "done"
    assert [r.fleet for r in reports] == [
        {"off": 1, "round": 1},
        {"off": 2, "round": 101, "migrated": True},
    ]
    rows = list(b_server.store.iterations(assignment))
    assert [r.off_board_hash for r in rows] == [H["off1.py"], H["off2.py"]]


async def test_an_assignment_whose_stored_state_cannot_be_read_is_interrupted_with_the_reason(tmp_path, start_server):
    """The others resume and the server starts; the audit log says which was which."""
    db = Store(tmp_path / "server.sqlite3")
    good = db.create_assignment(MEAN, ["v1"])
    no_task = db.create_assignment(MEAN, ["v1"])
    db.save_versions(no_task, '{"target": {"*": null}, "off_board": null, "off_board_next": null,'
                              ' "migrate_next": null, "newest_first": [], "on_board": []}')
    db.open_iteration(no_task, 1, time.time())  # as a server before resume opened it: no task kept
    lost_module = db.create_assignment(MEAN, ["v1"])
    db.save_versions(lost_module, '{"target": {"*": "' + "ab" * 32 + '"}, "off_board": null,'
                                  ' "off_board_next": null, "migrate_next": null,'
                                  ' "newest_first": ["' + "ab" * 32 + '"],'
                                  ' "on_board": ["' + "ab" * 32 + '"]}')
    garbled = db.create_assignment(MEAN, ["v1"])
    db.save_versions(garbled, '{"target": 5}')
    db.close()

    server = await start_server(tmp_path)  # on the database as left above
    assert set(server.runners) == {good}
    reasons = {a: server.store.assignment(a).reason for a in (no_task, lost_module, garbled)}
    assert all(server.store.assignment(a).state == "interrupted" for a in reasons)
    assert "the open iteration 1 was stored without its task" in reasons[no_task]
    assert f"version {'ab' * 32} is not in the module registry" in reasons[lost_module]
    assert "the saved versions are malformed" in reasons[garbled]
    assert all(r.startswith("cannot resume after the server restarted") for r in reasons.values())
    actions = {a: [r.action for r in server.store.audit_log(a)] for a in (good, *reasons)}
    assert actions == {good: ["resumed"], no_task: ["resume failed"], lost_module: ["resume failed"],
                       garbled: ["resume failed"]}
    analyst = await AnalystClient.connect("127.0.0.1", server.port, AT, identity="analyst")
    status = await analyst.status()
    await analyst.close()
    assert {a.assignment: a.state for a in status.assignments} == {
        good: "running", no_task: "interrupted", lost_module: "interrupted", garbled: "interrupted"
    }


@pytest.mark.timeout(90)
async def test_killed_between_two_iterations_the_next_one_opens_with_the_state_the_last_one_left(
        tmp_path, start_server):
    """A kill after iteration 1 closed and before iteration 2 was stored: the image
    has no open iteration; the resumed runner opens iteration 2 (not 1 again, not 3)
    and sends the fleet state iteration 1 left."""
    spec = AssignmentSpec(
        signals=["SPEED"], window=WindowSpec(amount=1, kind="latest"), iterations=2, deadline=60.0,
        on_board_module=ON1, off_board_module=OFF1,
    )

    a_server = await start_server(tmp_path)
    v1, v2 = await vehicle(a_server, "v1"), await vehicle(a_server, "v2")
    analyst = await AnalystClient.connect("127.0.0.1", a_server.port, AT, identity="analyst")
    assignment = (await analyst.submit(spec)).assignment
    await analyst.close()
    for channel, name in ((v1, "v1"), (v2, "v2")):
        await acknowledge_loads(channel, 1)
        await answer(channel, name, await next_of(channel, Task), 1, code_hash=H["on1.py"])
    assert (await next_of(v1, Task)).iteration == 2
    crash_copy(tmp_path, tmp_path / "image")
    await a_server.stop()
    image = Store(tmp_path / "image" / "server.sqlite3")
    image.db.execute("DELETE FROM iterations WHERE assignment = ? AND iteration = 2", (assignment,))
    image.close()

    b_server = await start_server(tmp_path / "image")
    runner, it = await open_iteration(b_server, assignment)
    assert it.number == 2 and not it.answers and runner.completed == 1
    audit = [r.detail for r in b_server.store.audit_log(assignment) if r.action == "resumed"]
    assert audit == ["1 iterations closed; going on with iteration 2"]
    v1, v2 = await vehicle(b_server, "v1"), await vehicle(b_server, "v2")
    for channel, name in ((v1, "v1"), (v2, "v2")):
        await acknowledge_loads(channel, 1)
        task = await next_of(channel, Task)
        assert task.iteration == 2 and task.state == {"off": 1, "round": 1}
        await answer(channel, name, task, 1, code_hash=H["on1.py"])
    analyst = await AnalystClient.connect("127.0.0.1", b_server.port, AT, identity="analyst")
    *reports, end = [r async for r in analyst.results(assignment, follow=True)]
    await analyst.close()
    assert end.state == "done"
    assert [r.fleet for r in reports] == [{"off": 1, "round": 1}, {"off": 1, "round": 2}]


async def test_cancelled_but_stopped_before_it_was_marked_so_it_ends_cancelled(tmp_path, start_server):
    """A kill between the cancelled iteration's close and the assignment's end must
    not bring a cancelled assignment back to life."""
    db = Store(tmp_path / "server.sqlite3")
    assignment = db.create_assignment(MEAN, ["v1"])
    versions = ('{"target": {"*": null}, "off_board": null, "off_board_next": null, "migrate_next": null,'
                ' "newest_first": [], "on_board": []}')
    db.begin_iteration(assignment, 1, time.time(), task_state=None, task_hashes={"*": None}, off_board_hash=None,
                       versions=versions)
    db.close_iteration(assignment, 1, status="cancelled", missing=["v1"], fleet=None, state=None,
                       reason="cancelled with 0 of 1 answers", closed=time.time())
    db.close()

    server = await start_server(tmp_path)  # on the database as left above
    await eventually(lambda: server.store.assignment(assignment).state != "running", 10,
                     what="the cancelled assignment to stop running")
    assert server.store.assignment(assignment).state == "cancelled"
    assert server.store.completed_iterations(assignment) == 1  # no iteration 2


async def test_killed_after_a_cancel_was_answered_but_before_its_iteration_closed_it_ends_cancelled(
        tmp_path, start_server):
    """The analyst was told "cancelled"; a kill before the runner closed the iteration
    must not bring the assignment back: the request is on disk with the answer."""
    from oodida.wire.messages import Cancel

    a_server = await start_server(tmp_path)
    v1 = await vehicle(a_server, "v1")
    await vehicle(a_server, "v2")
    analyst = await AnalystClient.connect("127.0.0.1", a_server.port, AT, identity="analyst")
    assignment = (await analyst.submit(MEAN)).assignment
    await analyst.close()
    task = await next_of(v1, Task)
    await answer(v1, "v1", task, mean_partial(2, 10.0))  # v2 never answers: iteration 1 stays open
    reply = a_server.cancel(Cancel(id=1, assignment=assignment), "alice")
    assert reply.state == "cancelled"
    crash_copy(tmp_path, tmp_path / "after-kill")  # no await since: the runner has not closed anything
    await a_server.stop()

    b_server = await start_server(tmp_path / "after-kill")
    await eventually(lambda: b_server.store.assignment(assignment).state != "running", 10,
                     what="the cancelled assignment to end (not resumed, not kept running)")
    assert b_server.store.assignment(assignment).state == "cancelled"
    iterations = b_server.store.iterations(assignment)
    assert [(it.iteration, it.status) for it in iterations] == [(1, "cancelled")]  # no iteration 2
    audit = [(r.who, r.action) for r in b_server.store.audit_log(assignment)]
    assert ("alice", "cancel") in audit and ("server", "resumed") in audit
    resumed = [r.detail for r in b_server.store.audit_log(assignment) if r.action == "resumed"]
    assert "cancelled before the stop" in resumed[0]


def test_version_maps_are_one_entry_for_a_fleet_on_one_version_and_round_trip():
    from oodida.server.versions import compact_map, expand_map

    fleet = [f"car-{i}" for i in range(1000)]
    same = {v: "a" * 64 for v in fleet}
    assert compact_map(same, fleet) == {"*": "a" * 64}
    mixed = {**same, "car-7": "b" * 64}
    del mixed["car-9"]
    compact = compact_map(mixed, fleet)
    assert compact == {"*": "a" * 64, "car-7": "b" * 64, "car-9": None}
    assert expand_map(compact, fleet) == mixed
    assert expand_map(compact_map({}, fleet), fleet) == {}
    with pytest.raises(ValueError, match="not a compacted version map"):
        expand_map({"car-1": "a" * 64}, fleet)


def test_latest_acknowledgement_wins_also_after_a_rollback(tmp_path):
    db = Store(tmp_path / "server.sqlite3")
    a = db.create_assignment(MEAN, ["v1", "v2"])
    db.add_module_acks([(a, "on_board", "A", "v1", True, None), (a, "on_board", "A", "v2", True, None)])
    db.add_module_acks([(a, "on_board", "B", "v1", True, None), (a, "on_board", "B", "v2", False, "refused")])
    db.add_module_acks([(a, "on_board", "A", "v1", True, None)])  # rolled back to A
    assert db.latest_acks(a) == {"v1": "A", "v2": "A"}
    db.close()


async def test_killed_after_the_last_iteration_closed_it_ends_done_and_right_after_submit_it_starts(
        tmp_path, start_server):
    """The two edges: every iteration closed but the assignment not yet marked done
    (it is marked done, nothing reruns), and nothing stored but the submit (it starts
    at iteration 1)."""
    db = Store(tmp_path / "server.sqlite3")
    finished = db.create_assignment(MEAN, ["v1"])
    versions = ('{"target": {"*": null}, "off_board": null, "off_board_next": null, "migrate_next": null,'
                ' "newest_first": [], "on_board": []}')
    for number in (1, 2, 3):
        db.begin_iteration(finished, number, time.time(), task_state=None, task_hashes={"*": None},
                           off_board_hash=None, versions=versions)
        db.close_iteration(finished, number, status="complete", missing=[], fleet={"n": number}, state=None,
                           reason="all 1 vehicles answered", closed=time.time())
    submitted = db.create_assignment(MEAN, ["v1"])
    db.close()

    server = await start_server(tmp_path)  # on the database as left above
    runner, it = await open_iteration(server, submitted)
    assert it.number == 1 and runner.completed == 0
    await eventually(lambda: server.store.assignment(finished).state != "running", 10,
                     what="the finished assignment to end")
    assert server.store.assignment(finished).state == "done"
    assert [r.fleet for r in server.store.iterations(finished)] == [{"n": 1}, {"n": 2}, {"n": 3}]


async def test_a_signed_module_goes_out_with_its_signature_after_the_restart(tmp_path, start_server):
    """Vehicles that require signatures must get the resumed assignment's module as
    the analyst signed it, or they would refuse it and the assignment would stall."""
    from oodida.core.signing import generate_key, load_signing_key, sign_spec

    private, _, key_id = generate_key(tmp_path / "analyst.key")
    spec = sign_spec(load_signing_key(private), AssignmentSpec(
        signals=["SPEED"], window=WindowSpec(amount=1, kind="latest"), iterations=1, deadline=60.0,
        on_board_module=ON1,
    ))
    signature = spec.on_board_module.signature

    a_server = await start_server(tmp_path)
    v1 = await vehicle(a_server, "v1")
    analyst = await AnalystClient.connect("127.0.0.1", a_server.port, AT, identity="analyst")
    assignment = (await analyst.submit(spec)).assignment
    await analyst.close()
    [load] = await acknowledge_loads(v1, 1)
    assert (load.module.signer, load.module.signature) == (key_id, signature)
    await a_server.stop()

    b_server = await start_server(tmp_path)
    v1 = await vehicle(b_server, "v1")
    [load] = await acknowledge_loads(v1, 1)
    assert load.code_hash == H["on1.py"]
    assert (load.module.signer, load.module.signature) == (key_id, signature)
    await answer(v1, "v1", await next_of(v1, Task), 1, code_hash=H["on1.py"])
    analyst = await AnalystClient.connect("127.0.0.1", b_server.port, AT, identity="analyst")
    *_, end = [r async for r in analyst.results(assignment, follow=True)]
    await analyst.close()
    assert end.state == "done"
