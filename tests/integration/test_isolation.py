"""Several analysts' assignments on the same real agents: each runs in its own worker
on every vehicle, and a result over the one item budget is "result too large" for
that vehicle, said by the vehicle, with no worker lost."""

from __future__ import annotations

import asyncio

import pytest

from oodida.wire.messages import AssignmentSpec, ModuleSource, WindowSpec
from tests.fleets import FleetSpec, start_replayed

pytestmark = pytest.mark.integration


def tagged(tag: int) -> ModuleSource:
    return ModuleSource(name=f"tag{tag}.py", source=(
        "import numpy as np\n"
        "SEEN = []\n"
        "def on_board(window, params, state):\n"
        f"    SEEN.append({tag})\n"
        "    return {'tag': " + str(tag) + ", 'seen': sorted(set(SEEN)), 'n': len(window['SPEED'].v)}\n"
    ))


FLEET = FleetSpec.of("isolation", start_replayed, vehicles=2, speed=0.0, loop=False, offsets=[0.0, 20.0],
                     signals=["SPEED"], agent_sandbox={"call_timeout": 5.0})


def spec(module: ModuleSource, iterations: int = 2) -> AssignmentSpec:
    return AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=50.0, kind="latest"), iterations=iterations,
                          on_board_module=module, deadline=30)


async def follow(client, assignment: int) -> list:
    return [r async for r in client.results(assignment, follow=True)]


def sandboxes(status) -> dict[str, tuple]:
    """Per vehicle: (zygote pid, workers started, restarts); (None, 0, 0) before any module."""
    return {v.vehicle: (v.status.sandbox.pid, v.status.sandbox.started, v.status.sandbox.restarts)
            if v.status.sandbox is not None else (None, 0, 0) for v in status.vehicles}


async def settled(client, done, timeout: float = 10.0) -> dict[str, tuple]:
    """The vehicles' sandboxes once `done` holds of them (agents report every 0.5 s)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        now = sandboxes(await client.status())
        if done(now) or asyncio.get_running_loop().time() > deadline:
            return now
        await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
async def test_assignments_on_one_agent_each_run_in_their_own_worker(fleet):
    client = await fleet.client()
    try:
        before = sandboxes(await client.status())
        ids = [(await client.submit(spec(tagged(t)))).assignment for t in (1, 2, 3)]
        items = await asyncio.gather(*(follow(client, a) for a in ids))
        before, items, after = before, items, await settled(client, lambda s: all(started >= 3 + before[v][1]
                                                                  for v, (_, started, _) in s.items()))
    finally:
        await client.close()
    for tag, got in zip((1, 2, 3), items, strict=True):
        reports, end = got[:-1], got[-1]
        assert end.state == "done" and len(reports) == 2
        for report in reports:
            for vehicle in fleet.vehicle_ids:
                r = report.vehicles[vehicle]
                # the module's globals saw only its own assignment's calls
                assert r.ok and r.value["tag"] == tag and r.value["seen"] == [tag], r
    for vehicle, (zygote, started, restarts) in after.items():
        assert restarts == 0
        assert started >= 3 + before[vehicle][1]  # a worker of its own for each
        assert before[vehicle][0] in (None, zygote)  # one zygote served them all


BIG = {
    "360000 zero-d arrays": ("[np.zeros((), np.uint8)] * 360000",
                             "result too large: the result has more than 1000000 items (at $[199999])"),
    "9 dimensions": ("{'a': np.zeros((1,) * 9)}", "result too large: an array of 9 dimensions at $.a; at most 8"),
    "560000 keys": ("{str(i): 0 for i in range(560000)}",
                    "result too large: the result has more than 1000000 items (at $['499999'])"),
    "zero-size rows": ("np.zeros((10 ** 9, 0))", "result too large: an array of shape (1000000000, 0) at $ counts as "
                       "1000000007 items"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(BIG))
async def test_a_result_over_the_budget_is_result_too_large_from_the_vehicle_and_no_worker_dies(fleet, case):
    expression, expected = BIG[case]
    module = ModuleSource(name="big.py", source=(
        f"import numpy as np\n\ndef on_board(window, params, state):\n    return {expression}\n"))

    client = await fleet.client()
    try:
        got = await follow(client, (await client.submit(spec(module, iterations=1))).assignment)
        await asyncio.sleep(1.2)  # two status reports (every 0.5 s): a worker killed would show
        after = sandboxes(await client.status())
    finally:
        await client.close()
    report = got[0]
    assert report.status == "failed"
    for vehicle in fleet.vehicle_ids:
        r = report.vehicles[vehicle]  # answered, by the vehicle: not "no answer from"
        assert not r.ok and r.error.startswith(expected), r.error
    assert all(restarts == 0 for _, _, restarts in after.values())  # refused by the check, no worker killed
