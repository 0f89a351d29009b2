"""AssignmentRunner on its own: the in-memory Fleet twin instead of sockets and agents.

A real SQLite store, the real built-in methods, real sandboxes for modules (the
server's OffBoardRunner, also running the scripted vehicles' on-board modules); only
the transport is the twin (`server.fleet_memory`). Each test drives the runner
through one rule of the iteration: quorum, deadline, vote, deploy, cancel, a failing
off-board step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oodida.analytics.series import Series
from oodida.sandbox.supervisor import source_hash
from oodida.server.deploys import Deployer
from oodida.server.fleet_memory import BUILTIN_CODE_HASH, MemoryFleet, ScriptedVehicle
from oodida.server.modules import OffBoardRunner
from oodida.server.runner import AssignmentRunner
from oodida.server.store import IterationRow, Store
from oodida.wire.messages import AssignmentSpec, Deploy, DeployEnd, ModuleSource, WindowSpec

WINDOW = WindowSpec(amount=1.0, kind="latest")

ON_BOARD = ModuleSource(
    name="on.py", source="def on_board(window, params, state):\n    return {'n': len(window['SPEED'].v)}\n"
)


def off_board_module(version: int) -> ModuleSource:
    """An off-board module that says which version it is, how many answered, and how
    many iterations ran before (through the state it hands itself)."""
    return ModuleSource(
        name=f"off{version}.py",
        source=(
            "def off_board(results, params, state):\n"
            f"    return {{'version': {version}, 'vehicles': sorted(results),"
            " 'n': sum(r['n'] for r in results.values()),"
            " 'round': 1 if state is None else state['round'] + 1}\n"
        ),
    )


def car(name: str, speeds: list[float], **script: Any) -> ScriptedVehicle:
    t = np.arange(len(speeds), dtype=np.float64)
    return ScriptedVehicle(name, {"SPEED": Series(t, np.asarray(speeds, dtype=np.float64))}, **script)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "server.sqlite3")
    yield s
    s.close()


@asynccontextmanager
async def sandbox() -> AsyncIterator[OffBoardRunner]:
    host = OffBoardRunner()
    try:
        yield host
    finally:
        await host.close()


def runner_for(
    fleet: MemoryFleet, store: Store, spec: AssignmentSpec, modules: OffBoardRunner | None = None
) -> AssignmentRunner:
    vehicles = sorted(fleet.vehicles)
    assignment = store.create_assignment(spec, vehicles)
    return fleet.add(AssignmentRunner(fleet, store, assignment, spec, vehicles, modules))


def rows(store: Store, assignment: int) -> list[IterationRow]:
    return list(store.iterations(assignment))


def state_of(store: Store, assignment: int) -> str:
    row = store.assignment(assignment)
    assert row is not None
    return row.state


async def test_iteration_closes_at_quorum_without_waiting_for_the_silent_vehicle(store: Store) -> None:
    fleet = MemoryFleet([car("car-1", [1, 2, 3]), car("car-2", [5]), car("car-3", [9], silent=True)])
    # a deadline the test would time out long before: only the quorum can close it
    spec = AssignmentSpec(signals=["SPEED"], window=WINDOW, on_board=["mean"], quorum=2, deadline=3600)
    runner = runner_for(fleet, store, spec)

    runner.start()
    assert await fleet.ended(runner.id, timeout=20) == "done"
    await fleet.close()
    [it] = rows(store, runner.id)
    assert it.status == "quorum" and it.missing == ["car-3"]
    assert it.fleet == {"mean": {"SPEED": pytest.approx(11 / 4)}}  # car-1 and car-2's samples together
    assert fleet.vehicles["car-3"].cancelled == [runner.id]  # told to drop the task it never answered
    assert state_of(store, runner.id) == "done"


async def test_iteration_closes_at_the_deadline_with_the_answers_received(store: Store) -> None:
    fleet = MemoryFleet([
        car("car-1", [2, 4]),
        car("car-2", [100], delay=2.0),  # answers after the deadline
        car("car-3", [100], connected=False),  # cannot be reached
    ])
    spec = AssignmentSpec(signals=["SPEED"], window=WINDOW, on_board=["mean", "count"], deadline=0.3)
    runner = runner_for(fleet, store, spec)

    runner.start()
    assert await fleet.ended(runner.id) == "done"
    await fleet.until(lambda: bool(fleet.late))  # the late answer arrives, to an iteration already closed
    await fleet.close()
    [it] = rows(store, runner.id)
    assert it.status == "partial" and it.missing == ["car-2", "car-3"]
    assert it.fleet == {"mean": {"SPEED": 3.0}, "count": {"SPEED": 2}}
    assert "deadline passed with 1 of 3" in (it.reason or "")
    assert [(r.vehicle, r.iteration) for r in fleet.late] == [("car-2", 1)]
    assert fleet.vehicles["car-3"].tasks == []


async def test_the_vote_sets_aside_answers_computed_with_a_minority_hash(store: Store) -> None:
    fleet = MemoryFleet([car("car-1", [1]), car("car-2", [3]), car("car-3", [1000], code_hash="other")])
    spec = AssignmentSpec(signals=["SPEED"], window=WINDOW, on_board=["mean"], deadline=10)
    runner = runner_for(fleet, store, spec)

    runner.start()
    assert await fleet.ended(runner.id) == "done"
    await fleet.close()
    [it] = rows(store, runner.id)
    assert it.status == "complete"  # all answered, but only the majority's answers count
    assert it.code_hash == BUILTIN_CODE_HASH and it.set_aside == {"car-3": "other"}
    assert it.fleet == {"mean": {"SPEED": 2.0}}
    assert "set aside: car-3 (other)" in (it.reason or "")


async def test_an_iterative_built_in_hands_its_state_to_the_next_task(store: Store) -> None:
    fleet = MemoryFleet([car("car-1", [1, 1.1, 0.9]), car("car-2", [10, 10.2, 9.8])])
    spec = AssignmentSpec(signals=["SPEED"], window=WINDOW, on_board=["kmeans"], params={"k": 2}, iterations=2)
    runner = runner_for(fleet, store, spec)

    runner.start()
    assert await fleet.ended(runner.id) == "done"
    await fleet.close()
    first, second = rows(store, runner.id)
    assert first.status == second.status == "complete"
    tasks = fleet.vehicles["car-1"].tasks
    assert tasks[0].state is None and tasks[1].state is not None and "kmeans" in tasks[1].state
    centroids = sorted(c[0] for c in second.fleet["kmeans"]["centroids"])
    assert centroids == [pytest.approx(1.0), pytest.approx(10.0)]


async def test_module_assignment_and_an_off_board_deploy_that_takes_effect_at_the_next_iteration(store: Store) -> None:
    v1, v2 = off_board_module(1), off_board_module(2)

    async with sandbox() as modules:
        fleet = MemoryFleet([car("car-1", [1, 2]), car("car-2", [3, 4, 5], delay=0.5)], sandbox=modules)
        spec = AssignmentSpec(signals=["SPEED"], window=WINDOW, on_board_module=ON_BOARD, off_board_module=v1,
                              iterations=2, deadline=30)
        runner = runner_for(fleet, store, spec, modules)
        deployer = Deployer(store, modules, fleet.connected, fleet.send_to)
        runner.start()
        await fleet.sent("car-2", 1)  # iteration 1 is open, car-2 has not answered yet
        replies = [r async for r in deployer.deploy(
            Deploy(id=1, assignment=runner.id, side="off_board", module=v2), "analyst", runner)]
        assert await fleet.ended(runner.id) == "done"
        await fleet.close()
        end = replies[-1]
        assert isinstance(end, DeployEnd)
    assert end.complete and end.code_hash == source_hash(v2.source)
    first, second = rows(store, runner.id)
    on_board_hash = source_hash(ON_BOARD.source)
    # iteration 1 keeps the version it started with; the deploy is in force from iteration 2
    assert first.off_board_hash == source_hash(v1.source) and second.off_board_hash == source_hash(v2.source)
    assert first.fleet == {"version": 1, "vehicles": ["car-1", "car-2"], "n": 5, "round": 1}
    assert second.fleet == {"version": 2, "vehicles": ["car-1", "car-2"], "n": 5, "round": 2}
    assert first.code_hash == second.code_hash == on_board_hash  # what the vehicles ran
    assert [t.module_hash for t in fleet.vehicles["car-1"].tasks] == [on_board_hash, on_board_hash]


async def test_an_on_board_deploy_between_iterations_is_what_the_next_task_asks_for(store: Store) -> None:
    v2 = ModuleSource(
        name="on2.py", source="def on_board(window, params, state):\n    return {'n': 100 * len(window['SPEED'].v)}\n"
    )

    async with sandbox() as modules:
        fleet = MemoryFleet([car("car-1", [1, 2]), car("car-2", [3], delay=0.5)], sandbox=modules)
        spec = AssignmentSpec(signals=["SPEED"], window=WINDOW, on_board_module=ON_BOARD,
                              off_board_module=off_board_module(1), iterations=2, deadline=30)
        runner = runner_for(fleet, store, spec, modules)
        deployer = Deployer(store, modules, fleet.connected, fleet.send_to)
        runner.start()
        await fleet.sent("car-2", 1)
        replies = [r async for r in deployer.deploy(
            Deploy(id=1, assignment=runner.id, side="on_board", module=v2), "analyst", runner)]
        assert isinstance(replies[-1], DeployEnd) and replies[-1].complete
        assert await fleet.ended(runner.id) == "done"
        await fleet.close()
    old, new = source_hash(ON_BOARD.source), source_hash(v2.source)
    first, second = rows(store, runner.id)
    # the open iteration finishes with the code it started with, the next runs the new version
    assert first.code_hash == old and first.fleet["n"] == 3
    assert second.code_hash == new and second.fleet["n"] == 300
    assert [t.module_hash for t in fleet.vehicles["car-2"].tasks] == [old, new]


async def test_cancel_closes_the_open_iteration_and_ends_the_assignment_cancelled(store: Store) -> None:
    fleet = MemoryFleet([car("car-1", [1]), car("car-2", [2])])
    spec = AssignmentSpec(signals=["SPEED"], window=WINDOW, on_board=["count"], iterations=0, deadline=3600)
    runner = runner_for(fleet, store, spec)

    runner.start()
    await fleet.wait_for(runner.id, ("iteration", 2))  # until cancelled: it goes on
    fleet.vehicles["car-2"].silent = True  # so the next iteration stays open
    await fleet.sent("car-2", 3)
    runner.cancel()
    assert await fleet.ended(runner.id, timeout=10) == "cancelled"
    await fleet.close()
    its = rows(store, runner.id)
    assert [it.status for it in its[:2]] == ["complete", "complete"]
    last = its[-1]
    assert last.status == "cancelled" and last.fleet is None and "car-2" in last.missing
    assert state_of(store, runner.id) == "cancelled"


async def test_a_failing_off_board_step_fails_its_iteration_and_the_next_one_still_runs(store: Store) -> None:
    broken = ModuleSource(name="broken.py", source="def off_board(results, params, state):\n    return 1 / 0\n")

    async with sandbox() as modules:
        fleet = MemoryFleet([car("car-1", [1]), car("car-2", [2])], sandbox=modules)
        # built-in on board, the analyst's module off board
        spec = AssignmentSpec(signals=["SPEED"], window=WINDOW, on_board=["count"], off_board_module=broken,
                              iterations=2, deadline=30)
        runner = runner_for(fleet, store, spec, modules)
        runner.start()
        assert await fleet.ended(runner.id) == "done"
        await fleet.close()
    its = rows(store, runner.id)
    assert [it.status for it in its] == ["failed", "failed"]
    for it in its:
        assert it.fleet is None and "off-board step failed" in (it.reason or "")
        assert "ZeroDivisionError" in (it.reason or "") and "all 2 vehicles answered" in (it.reason or "")
    assert runner.state is None  # a failed step hands no state on


async def test_an_off_board_module_on_a_server_without_a_sandbox_fails_with_the_reason(store: Store) -> None:
    fleet = MemoryFleet([car("car-1", [1])])
    spec = AssignmentSpec(signals=["SPEED"], window=WINDOW, on_board=["count"],
                          off_board_module=off_board_module(1), deadline=10)
    runner = runner_for(fleet, store, spec, modules=None)

    runner.start()
    assert await fleet.ended(runner.id) == "done"
    await fleet.close()
    [it] = rows(store, runner.id)
    assert it.status == "failed"
    assert (it.reason or "").startswith("off-board step failed: this server runs no off-board modules")


async def test_off_board_none_gives_no_fleet_result_but_keeps_the_answers(store: Store) -> None:
    fleet = MemoryFleet([car("car-1", [1, 2]), car("car-2", [3])], store=store)
    spec = AssignmentSpec(signals=["SPEED"], window=WINDOW, on_board=["count"], off_board="none", deadline=10)
    runner = runner_for(fleet, store, spec)

    runner.start()
    assert await fleet.ended(runner.id) == "done"
    await fleet.close()
    [it] = rows(store, runner.id)
    assert it.status == "complete" and it.fleet is None
    answers = {r.vehicle: r.value for r in store.results(runner.id, 1)}
    assert answers == {"car-1": {"count": {"SPEED": 2}}, "car-2": {"count": {"SPEED": 1}}}
