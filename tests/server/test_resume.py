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

from sandbox.supervisor import source_hash
from server.app import Server
from server.client import AnalystClient
from server.store import Store
from tests.conftest import run
from tests.server.test_app import AT, Started, config, mean_partial, vehicle
from wire.messages import (
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


async def started_on(path: Path) -> Server:
    server = Started(config(path))
    await server.start()
    return server


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
    deadline = time.monotonic() + timeout
    while runner.current is None:
        assert time.monotonic() < deadline, "the resumed runner opened no iteration"
        await asyncio.sleep(0.01)
    return runner, runner.current


MEAN = AssignmentSpec(
    signals=["SPEED"], window=WindowSpec(amount=1, kind="latest"), iterations=3, on_board=["mean"], deadline=60.0
)


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_the_open_iteration_is_reopened_with_its_number_and_answers_and_the_rest_follows(tmp_path, how):
    async def main():
        a_server = await started_on(tmp_path)
        v1, v2 = await vehicle(a_server, "v1"), await vehicle(a_server, "v2")
        analyst = await AnalystClient.connect("127.0.0.1", a_server.port, AT)
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

        b_server = await started_on(where)
        try:
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

            analyst = await AnalystClient.connect("127.0.0.1", b_server.port, AT)
            reports = [r async for r in analyst.results(assignment, follow=True)]
            await analyst.close()
            *iterations, end = reports
            assert end.state == "done"
            assert [r.iteration for r in iterations] == [1, 2, 3]
            assert all(r.status == "complete" for r in iterations)
            assert [r.fleet["mean"]["SPEED"] for r in iterations] == pytest.approx([40.0 / 5, 16.0 / 2, 1.0])
            assert [r.vehicle for r in b_server.store.results(assignment, 2)] == ["v1", "v2"]
        finally:
            await b_server.stop()

    run(main())
