"""The task runner's one face for the built-ins and the modules (agent/methods.py).

A real signal store, a real outbox, a real sandbox: the same task shape answered by
the built-in methods and by a loaded module version, and a module task on a vehicle
that holds no version, which must fail at once (not after the window's wait) and
name what the vehicle refused.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from oodida.agent.methods import BUILTIN_CODE_HASH, NO_MODULE_HASH, BuiltinOnBoard, MissingModule, SandboxedOnBoard
from oodida.agent.modules import ModuleRunner
from oodida.agent.outbox import Outbox
from oodida.agent.store import SignalStore
from oodida.agent.tasks import SignalResolver, TaskRunner
from oodida.analytics import registry
from oodida.sandbox.supervisor import source_hash
from oodida.wire.messages import LoadModule, ModuleSource, Result, Task, WindowSpec

MODULE = ModuleSource(
    name="total.py", source="def on_board(window, params, state):\n    return float(window['SPEED'].v.sum())\n"
)


def task(iteration: int, module_hash: str | None = None, deadline: float = 10) -> Task:
    return Task(
        assignment=7, iteration=iteration, signals=["SPEED"],
        window=WindowSpec(amount=4, unit="samples", kind="latest"), methods=[] if module_hash else ["mean"],
        params={}, deadline=deadline, module_hash=module_hash,
    )


class Agent:
    def __init__(self, store: SignalStore, path: Path) -> None:
        self.answers: asyncio.Queue[Result] = asyncio.Queue()
        self.outbox = Outbox(path)
        self.runner = TaskRunner("car-1", store, SignalResolver([], store), self.outbox, self.answers.put,
                                 ModuleRunner())

    async def answer(self, t: Task, timeout: float = 10) -> Result:
        self.runner.submit(t)
        return await asyncio.wait_for(self.answers.get(), timeout)

    async def close(self) -> None:
        await self.runner.stop()
        self.outbox.close()


async def test_built_in_and_module_tasks_go_through_the_same_step(tmp_path: Path) -> None:
    store = SignalStore()
    store.declare(["SPEED"])
    for t in range(4):
        store.add(float(t), [("SPEED", float(t + 1))])
    agent = Agent(store, tmp_path / "outbox.sqlite3")
    try:
        code_hash = source_hash(MODULE.source)
        builtin = agent.runner.steps.pin(task(1))
        assert builtin is None
        assert isinstance(await agent.runner.steps.bind(task(1), builtin), BuiltinOnBoard)
        ack = await agent.runner.versions.load(LoadModule(assignment=7, code_hash=code_hash, module=MODULE))
        assert ack.ok, ack.error
        step = await agent.runner.steps.bind(task(2, code_hash), agent.runner.steps.pin(task(2, code_hash)))
        assert isinstance(step, SandboxedOnBoard) and step.code_hash == code_hash

        by_builtin = await agent.answer(task(1))
        by_module = await agent.answer(task(2, code_hash))
        assert by_builtin.ok and by_builtin.code_hash == BUILTIN_CODE_HASH
        assert registry.summarize(["mean"], by_builtin.value) == {"mean": {"SPEED": 2.5}}  # of 1, 2, 3, 4
        assert by_module.ok and by_module.code_hash == code_hash and by_module.value == 10.0
        assert by_builtin.samples == by_module.samples == {"SPEED": 4}
    finally:
        await agent.close()


async def test_a_module_task_without_a_loaded_version_fails_at_once_and_says_why(tmp_path: Path) -> None:
    refused = ModuleSource(name="bad.py", source="import os\n\ndef on_board(window, params, state):\n    return 1\n")

    store = SignalStore()
    store.declare(["SPEED"])  # no sample: a window would wait out the deadline
    agent = Agent(store, tmp_path / "outbox.sqlite3")
    try:
        code_hash = source_hash(refused.source)
        ack = await agent.runner.versions.load(LoadModule(assignment=7, code_hash=code_hash, module=refused))
        assert not ack.ok
        step = await agent.runner.steps.bind(task(1, code_hash), agent.runner.steps.pin(task(1, code_hash)))
        assert isinstance(step, MissingModule) and step.code_hash == NO_MODULE_HASH
        # an hour's deadline: only failing before the window's wait answers within the test's 10 s
        result = await agent.answer(task(1, code_hash, deadline=3600))
        assert not result.ok and result.code_hash == NO_MODULE_HASH
        assert result.error is not None
        assert result.error.startswith("no version of assignment 7's module is loaded on this vehicle")
        assert f"it refused version {code_hash[:12]}" in result.error
    finally:
        await agent.close()
