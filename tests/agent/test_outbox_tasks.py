"""Exactly once with a server that resumes: a task asked again is answered from the outbox.

A server that restarts in the middle of an iteration sends the open iteration's task
again to the vehicles it has no result from. The window has moved since the first
computation, so computing again could give another value for the same (assignment,
iteration): the vehicle must answer with the result it computed first.
"""

from __future__ import annotations

import asyncio
import logging

from oodida.agent.modules import ModuleRunner
from oodida.agent.outbox import Outbox
from oodida.agent.store import SignalStore
from oodida.agent.tasks import SignalResolver, TaskRunner
from oodida.wire.codec import encode_payload
from oodida.wire.messages import Result, Task, WindowSpec
from tests.helpers import eventually


def feed(store: SignalStore, start: int, stop: int) -> None:
    for t in range(start, stop):
        store.add(float(t), [("SPEED", float(t))])


def task(iteration: int) -> Task:
    return Task(
        assignment=4, iteration=iteration, signals=["SPEED"],
        window=WindowSpec(amount=10, unit="samples", kind="latest"), methods=["mean"], params={}, deadline=10,
    )


class Agent:
    """The task side of an agent, on a real store and a real outbox file; what it
    sends is collected where the uplink would put it on the wire."""

    def __init__(self, store: SignalStore, outbox: Outbox) -> None:
        self.sent: list[Result] = []
        self.outbox = outbox
        self.runner = TaskRunner("car-1", store, SignalResolver([], store), outbox, self._send, ModuleRunner())

    async def _send(self, result: Result) -> None:
        self.sent.append(result)

    async def answer(self, t: Task) -> Result:
        before = len(self.sent)
        self.runner.submit(t)
        await eventually(lambda: len(self.sent) > before, 10, what=f"an answer to task {t.assignment}/{t.iteration}")
        return self.sent[-1]


async def test_a_task_asked_again_gets_the_stored_result_not_a_new_computation(tmp_path, caplog):
    path = tmp_path / "outbox.sqlite3"
    caplog.set_level(logging.INFO, logger="oodida.agent.tasks")

    store = SignalStore()
    store.declare(["SPEED"])
    feed(store, 0, 100)
    agent = Agent(store, Outbox(path))
    first = await agent.answer(task(1))
    assert first.ok and (4, 1) in agent.outbox
    feed(store, 100, 200)  # the window moves on: a recomputation would differ
    fresh = await agent.answer(task(2))
    assert fresh.value != first.value  # (so the check below can fail)
    again = await agent.answer(task(1))  # the resumed server asks again
    assert encode_payload(again) == encode_payload(first)
    assert not agent.runner.running
    await agent.runner.stop()
    agent.outbox.close()

    # the agent restarted meanwhile: the result is still the one of the file
    restarted = Agent(store, Outbox(path))
    feed(store, 200, 300)
    after_restart = await restarted.answer(task(1))
    assert encode_payload(after_restart) == encode_payload(first)
    assert not restarted.runner.running
    await restarted.runner.stop()
    restarted.outbox.close()
    assert "task 4/1: its result waits in the outbox; sent again, not computed again" in caplog.text


async def test_an_acknowledged_task_asked_again_is_not_computed_again(tmp_path):
    """Acknowledged means stored by the server: a repeat (a duplicate in flight) is ignored."""

    store = SignalStore()
    store.declare(["SPEED"])
    feed(store, 0, 100)
    agent = Agent(store, Outbox(tmp_path / "outbox.sqlite3"))
    await agent.answer(task(1))
    agent.outbox.ack((4, 1))
    agent.runner.submit(task(1))
    await asyncio.sleep(0.2)
    assert len(agent.sent) == 1 and not agent.runner.running and len(agent.outbox) == 0
    await agent.runner.stop()
    agent.outbox.close()
