"""The agent's side of active-code replacement, with a real sandbox worker: every
version is checked again on the vehicle, a refused one leaves the previous version in
force, loads apply in arrival order, a task runs the version that was newest when it
arrived, and no load starts a process."""

from __future__ import annotations

import asyncio

import pytest

from oodida.agent.modules import ModuleRunner
from oodida.agent.versions import ModuleVersions
from oodida.sandbox.supervisor import source_hash
from oodida.wire.messages import LoadModule, ModuleSource


def module(version: int, extra: str = "") -> ModuleSource:
    return ModuleSource(
        name=f"v{version}.py", source=f"{extra}def on_board(window, params, state):\n    return {version}\n"
    )


def load(assignment: int, m: ModuleSource, code_hash: str | None = None) -> LoadModule:
    return LoadModule(assignment=assignment, code_hash=code_hash or source_hash(m.source), module=m)


@pytest.mark.timeout(60)
async def test_versions_are_checked_again_and_a_refused_one_keeps_the_previous():
    runner = ModuleRunner()
    versions = ModuleVersions(runner)
    try:
        v1, v2 = module(1), module(2)
        ack = await versions.load(load(1, v1))
        assert ack.ok and ack.error is None and ack.code_hash == source_hash(v1.source)
        worker = runner.supervisor(1).pid
        refusals = {
            "does not match the hash": load(1, v2, code_hash=source_hash(v1.source + " ")),
            "forbidden import": load(1, module(3, "import os\n")),
            "does not define on_board": load(
                1, ModuleSource(name="off.py", source="def off_board(results, params, state):\n    return 1\n")
            ),
            "ZeroDivisionError": load(1, module(4, "X = 1 / 0\n")),
        }
        for expect, message in refusals.items():
            ack = await versions.load(message)
            assert not ack.ok and expect in ack.error, ack.error
            assert versions.current[1].code_hash == source_hash(v1.source)
        assert (await versions.load(load(1, v2))).ok
        assert versions.current[1].module == v2
        again = await versions.load(load(1, v2))  # a version it holds: acknowledged again at once
        assert again.ok
        assert runner.supervisor(1).pid == worker and runner.supervisor(1).spawned == 1  # no process started
        assert runner.info().modules >= 3
    finally:
        await runner.close()


@pytest.mark.timeout(60)
async def test_a_task_runs_the_version_newest_when_it_arrived_never_a_later_one():
    runner = ModuleRunner()
    versions = ModuleVersions(runner)
    try:
        v1, v2, v3 = module(1), module(2), module(3)
        assert versions.pending(5) is None
        assert await versions.bind(5, None) is None  # nothing loaded for this assignment yet
        first = versions.load(load(5, v1))
        second = versions.load(load(5, v2))
        task_a = versions.pending(5)  # a task arriving now must wait for both loads, and get v2
        third = versions.load(load(5, v3))
        task_b = versions.pending(5)
        bound_a, bound_b = await asyncio.gather(versions.bind(5, task_a), versions.bind(5, task_b))
        assert bound_a.module == v2 and bound_b.module == v3
        assert [(await f).ok for f in (first, second, third)] == [True, True, True]
        # a refused load after a task changes nothing for it, nor for the next one
        bad = versions.load(load(5, module(9, "import os\n")))
        task_c = versions.pending(5)
        assert (await versions.bind(5, task_c)).module == v3 and not (await bad).ok
        other = versions.load(load(6, v1))  # assignments do not wait for each other
        assert (await versions.bind(6, versions.pending(6))).module == v1 and (await other).ok
        assert {a: v.code_hash for a, v in versions.current.items()} == {
            5: source_hash(v3.source), 6: source_hash(v1.source)
        }
    finally:
        await runner.close()


@pytest.mark.timeout(60)
async def test_a_module_with_hundreds_of_problems_is_refused_within_the_acknowledgements_limit():
    runner = ModuleRunner()
    versions = ModuleVersions(runner)
    try:
        bad = "".join(f"import os{i}\n" for i in range(300))  # 300 forbidden imports, one a line
        ack = await versions.load(load(1, module(1, bad)))
        assert not ack.ok
        assert len(ack.error) <= 4000, len(ack.error)
        assert "forbidden import" in ack.error and "os0" in ack.error
        assert ack.error.rstrip().endswith("more"), ack.error[-200:]  # the rest counted, not cut mid-line
        assert "and " in ack.error.splitlines()[-1]
    finally:
        await runner.close()
