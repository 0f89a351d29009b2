"""Active-code replacement with real processes on loopback: a server, three agents
replaying the real drive at real time, and modules replaced between iterations of
running assignments. Each test checks, iteration by iteration, which version
computed what, and that no process (agent, server, sandbox worker) was restarted
to do it."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from oodida.client.protocol import RequestFailed
from oodida.sandbox.supervisor import source_hash
from oodida.wire.messages import (
    AssignmentSpec,
    IterationReport,
    ModuleSource,
    WindowSpec,
)
from tests.fleets import FleetSpec
from tests.integration.assignments import deploy, finish, processes, wait_iterations

pytestmark = pytest.mark.integration


def on_board(version: int) -> ModuleSource:
    return ModuleSource(
        name=f"count_v{version}.py",
        source=(
            "def on_board(window, params, state):\n"
            "    speed = window['SPEED']\n"
            f"    return {{'version': {version}, 'samples': len(speed.v)}}\n"
        ),
    )


OFF_V1 = ModuleSource(
    name="fleet_v1.py",
    source=(
        "def off_board(results, params, state):\n"
        "    rounds = 0 if state is None else state['round']\n"
        "    versions = sorted(set(r['version'] for r in results.values()))\n"
        "    return {'round': rounds + 1, 'versions': versions, 'off': 1}\n"
    ),
)
OFF_V2 = ModuleSource(
    name="fleet_v2.py",
    source=(
        "def off_board(results, params, state):\n"
        "    versions = sorted(set(r['version'] for r in results.values()))\n"
        "    return {'round': state['round'] + 1, 'versions': versions, 'off': 2, 'migrated': state['migrated']}\n"
        "\n"
        "def migrate(old_state):\n"
        "    return {'round': old_state['round'] * 100, 'migrated': True}\n"
    ),
)
V1, V2, V3 = on_board(1), on_board(2), on_board(3)
H = {m.name: source_hash(m.source) for m in (V1, V2, V3, OFF_V1, OFF_V2)}


FLEET = FleetSpec.of("replacement", vehicles=3, speed=1.0, loop=True, offsets=[0.0, 20.0, 40.0], signals=["SPEED"])


def spec(on: ModuleSource, off: ModuleSource | None = None, **kw) -> AssignmentSpec:
    kw.setdefault("deadline", 10.0)
    kw.setdefault("iterations", 0)
    return AssignmentSpec(
        signals=["SPEED"], window=WindowSpec(amount=0.3, kind="next"), on_board_module=on, off_board_module=off,
        **kw,
    )


def version_of(report: IterationReport) -> set[int]:
    """The versions that computed the aggregated results (the set-aside ones excluded)."""
    return {r.value["version"] for v, r in report.vehicles.items() if r.ok and v not in report.set_aside}


@pytest.mark.timeout(120)
async def test_on_board_and_off_board_replaced_mid_assignment_without_restarting_anything(fleet):
    client = await fleet.client()
    try:
        a = (await client.submit(spec(V1, OFF_V1))).assignment
        await wait_iterations(client, a, 2)
        before = await processes(client)
        assert set(before) == {"server", *fleet.vehicle_ids}
        assert before["server"][0] == fleet.server.pid
        for vehicle, proc in fleet.agents.items():
            assert before[vehicle][0] == proc.pid and before[vehicle][1][0] is not None

        t0 = time.time()
        events, end = await deploy(client, assignment=a, side="on_board", module=V2)
        t1 = time.time()
        assert events[0].code_hash == H[V2.name] and sorted(events[0].vehicles) == fleet.vehicle_ids
        assert sorted(e.vehicle for e in events[1:-1]) == fleet.vehicle_ids and all(e.ok for e in events[1:-1])
        assert end.complete and sorted(end.acked) == fleet.vehicle_ids and not end.refused and not end.waiting
        await wait_iterations(client, a, 2, after=t1)

        t2 = time.time()
        _, off_end = await deploy(client, assignment=a, side="off_board", module=OFF_V2)
        t3 = time.time()
        assert off_end.complete and off_end.acked == ["server"]
        await wait_iterations(client, a, 2, after=t3)
        after = await processes(client)
        got, versions = await finish(client, a), await client.versions(a)
    finally:
        await client.close()
    # nothing restarted: the same agent and server processes, the same sandbox workers
    assert after == before
    for vehicle, proc in fleet.agents.items():
        assert proc.poll() is None and after[vehicle][0] == proc.pid
    assert fleet.server.poll() is None

    last_round = last_off = None
    for r in got:
        assert r.status == "complete", r.reason
        assert not r.set_aside, f"iteration {r.iteration} mixed versions: {r.set_aside}"
        # every answer computed by the version the iteration reports, and its value says which
        assert {v.code_hash for v in r.vehicles.values()} == {r.code_hash}
        version = {H[V1.name]: 1, H[V2.name]: 2}[r.code_hash]
        assert version_of(r) == {version} and r.fleet["versions"] == [version]
        if r.closed < t0:
            assert version == 1
        if r.started > t1:
            assert version == 2  # the next iteration after the acknowledgements runs the new code
        off = {H[OFF_V1.name]: 1, H[OFF_V2.name]: 2}[r.off_board_hash]
        assert r.fleet["off"] == off
        if r.closed < t2:
            assert off == 1
        if r.started > t3:
            assert off == 2
        if last_round is not None:  # migrate(old_state) ran once, at the switch
            assert r.fleet["round"] == (last_round * 100 + 1 if off == 2 and last_off == 1 else last_round + 1)
        last_round, last_off = r.fleet["round"], off
    assert [version_of(r) for r in got] == sorted(version_of(r) for r in got)  # never back to v1
    assert any(r.fleet.get("migrated") for r in got)

    by_hash = {(v.side, v.code_hash): v for v in versions.versions}
    assert [(v.side, v.kind) for v in versions.versions] == [
        ("on_board", "submit"), ("off_board", "submit"), ("on_board", "deploy"), ("off_board", "deploy"),
    ]
    served = {k: v.iterations for k, v in by_hash.items()}
    assert sorted(served[("on_board", H[V1.name])] + served[("on_board", H[V2.name])]) == [r.iteration for r in got]
    assert sorted(by_hash[("on_board", H[V2.name])].acked) == fleet.vehicle_ids
    assert [v.current for v in versions.versions] == [False, False, True, True]

    db = sqlite3.connect(f"file:{fleet.workdir / 'server.sqlite3'}?mode=ro", uri=True)
    actions = [row for row in db.execute("SELECT action, detail FROM audit WHERE assignment = ? ORDER BY id", (a,))]
    assert [act for act, _ in actions] == ["submit", "submit", "deploy", "deploy", "migrate",
                                           "cancel"]  # finish() cancels
    assert H[V2.name] in actions[2][1] and H[OFF_V2.name] in actions[3][1]


@pytest.mark.timeout(90)
async def test_a_minority_on_another_version_is_set_aside_by_the_vote(fleet):
    first, second, third = fleet.vehicle_ids

    client = await fleet.client()
    try:
        a = (await client.submit(spec(V1, OFF_V1))).assignment
        await wait_iterations(client, a, 1)
        _, end = await deploy(client, assignment=a, side="on_board", module=V2, vehicles=[first])
        assert end.complete and end.acked == [first]
        t1 = time.time()
        minority = await wait_iterations(client, a, 2, after=t1)
        _, end = await deploy(client, assignment=a, side="on_board", module=V2, vehicles=[second])
        t2 = time.time()
        majority = await wait_iterations(client, a, 2, after=t2)
        await finish(client, a)
    finally:
        await client.close()
    for r in minority:  # one vehicle on v2: v1 wins, the v2 result is kept but not aggregated
        assert r.code_hash == H[V1.name] and r.set_aside == {first: H[V2.name]}
        assert r.vehicles[first].ok and r.vehicles[first].value["version"] == 2
        assert r.fleet["versions"] == [1] and version_of(r) == {1}
        assert "set aside" in r.reason
    for r in majority:  # two of three on v2: v2 wins, the one left on v1 is set aside
        assert r.code_hash == H[V2.name] and r.set_aside == {third: H[V1.name]}
        assert r.fleet["versions"] == [2] and version_of(r) == {2}


@pytest.mark.timeout(90)
async def test_a_broken_module_is_refused_and_the_old_version_keeps_running(fleet):
    broken = {
        "forbidden import": ModuleSource(name="bad.py",
                                         source="import os\ndef on_board(window, params, state):\n    return 1\n"),
        "does not define on_board": ModuleSource(
            name="offonly.py", source="def off_board(results, params, state):\n    return 1\n"
        ),
        "ZeroDivisionError": ModuleSource(name="boom.py",
                                          source="X = 1 / 0\ndef on_board(window, params, state):\n    return X\n"),
    }

    client = await fleet.client()
    try:
        a = (await client.submit(spec(V1))).assignment
        await wait_iterations(client, a, 1)
        reasons = {}
        for expect, module in broken.items():
            with pytest.raises(RequestFailed) as info:
                await deploy(client, assignment=a, side="on_board", module=module)
            reasons[expect] = info.value.reason
        with pytest.raises(RequestFailed) as info:  # built-in fleet step: nothing to replace off board
            await deploy(client, assignment=a, side="off_board", module=OFF_V1)
        reasons["built-in"] = info.value.reason
        t = time.time()
        later = await wait_iterations(client, a, 2, after=t)
        await finish(client, a)
        a, reasons, later, versions = a, reasons, later, await client.versions(a)
    finally:
        await client.close()
    for expect, reason in reasons.items():
        assert expect in reason, reason
    assert "the running version stays" in reasons["forbidden import"]
    for r in later:
        assert r.status == "complete" and r.code_hash == H[V1.name] and version_of(r) == {1}
    assert [(v.kind, v.code_hash) for v in versions.versions] == [("submit", H[V1.name])]
    db = sqlite3.connect(f"file:{fleet.workdir / 'server.sqlite3'}?mode=ro", uri=True)
    actions = [row[0] for row in db.execute("SELECT action FROM audit WHERE assignment = ? ORDER BY id", (a,))]
    assert actions == ["submit"] + ["deploy refused"] * 4 + ["cancel"]  # finish() cancels


@pytest.mark.timeout(90)
async def test_rollback_deploys_an_earlier_version_by_its_hash(fleet):
    client = await fleet.client()
    try:
        a = (await client.submit(spec(V1))).assignment
        await deploy(client, assignment=a, side="on_board", module=V2)
        await wait_iterations(client, a, 1, after=time.time())
        events, end = await deploy(client, assignment=a, side="on_board", code_hash=H[V1.name][:10])
        assert events[0].rollback and events[0].code_hash == H[V1.name] and end.complete
        t = time.time()
        back = await wait_iterations(client, a, 2, after=t)
        with pytest.raises(RequestFailed) as info:
            await deploy(client, assignment=a, side="on_board", code_hash=H[V3.name][:10])
        await finish(client, a)
        back, unknown, versions = back, info.value.reason, await client.versions(a)
    finally:
        await client.close()
    for r in back:
        assert r.code_hash == H[V1.name] and version_of(r) == {1} and not r.set_aside
    assert "never ran" in unknown
    assert [v.kind for v in versions.versions] == ["submit", "deploy", "rollback"]
    assert [v.current for v in versions.versions] == [False, False, True]


@pytest.mark.timeout(120)
async def test_an_agent_offline_during_a_deploy_gets_the_current_version_when_it_returns(fleet):
    gone = fleet.vehicle_ids[-1]

    client = await fleet.client()
    try:
        # quorum all, short deadline: iterations close at the deadline while it is gone, and
        # once it is back it answers every iteration (with a quorum of 2 the restarted,
        # slowest vehicle could be cut from each one)
        a = (await client.submit(spec(V1, deadline=2.0))).assignment
        await wait_iterations(client, a, 1)
        fleet.kill_agent(gone)
        events, end = await deploy(client, assignment=a, side="on_board", module=V3)
        assert events[0].offline == [gone] and gone not in events[0].vehicles
        assert end.complete and end.waiting == [gone]
        fleet.start_agent(fleet.vehicle_ids.index(gone))
        await fleet.wait_connected(client, [gone])
        t = time.time()
        later = await wait_iterations(client, a, 3, after=t)
        status = await client.status()
        await finish(client, a)
        a, later, status, versions = a, later, status, await client.versions(a)
    finally:
        await client.close()
    answered = [r.vehicles[gone] for r in later if gone in r.vehicles]
    assert answered, "the returning agent answered no iteration"
    assert all(v.code_hash == H[V3.name] and v.value["version"] == 3 for v in answered)
    for r in later:
        assert r.code_hash == H[V3.name] and not r.set_aside
    mine = next(v for v in status.vehicles if v.vehicle == gone)
    assert mine.status.modules[str(a)] == H[V3.name]
    deployed = next(v for v in versions.versions if v.code_hash == H[V3.name])
    assert gone in deployed.acked


async def test_the_analyst_commands_deploy_versions_and_rollback(fleet, tmp_path):
    import os
    import subprocess
    import sys

    def oodida(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "OODIDA_CREDENTIALS": str(fleet.analyst_credentials),
               "OODIDA_SERVER": f"127.0.0.1:{fleet.port}"}
        return subprocess.run([sys.executable, "-m", "oodida", *args], capture_output=True, text=True, env=env,
                              timeout=60)

    client = await fleet.client()
    try:
        a = (await client.submit(spec(V1))).assignment
    finally:
        await client.close()
    path = tmp_path / V2.name
    path.write_text(V2.source)
    out = await asyncio.to_thread(oodida, "deploy", str(path), "--assignment", str(a), "--on-board")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"deploying count_v2.py {H[V2.name][:12]} to assignment {a} (on board): 3 vehicles")
    assert sorted(line.split()[0] for line in lines[1:4]) == fleet.vehicle_ids  # one line per vehicle
    assert all("runs it" in line for line in lines[1:4])
    assert lines[4].startswith(f"3 of 3 run {H[V2.name][:12]}, ") and "ms after the deploy" in lines[4]

    bad = tmp_path / "bad.py"
    bad.write_text("import os\ndef on_board(window, params, state):\n    return 1\n")
    out = await asyncio.to_thread(oodida, "deploy", str(bad), "--assignment", str(a), "--on-board")
    assert out.returncode == 1 and "forbidden import" in out.stderr and "the running version stays" in out.stderr

    out = await asyncio.to_thread(oodida, "rollback", str(a), H[V1.name][:8])  # the side is found from the versions
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"rolling back to count_v1.py {H[V1.name][:12]}")

    out = await asyncio.to_thread(oodida, "versions", str(a))
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if "on board" in line]
    assert [r[1:].split()[4] for r in rows] == ["submit", "deploy", "rollback"]
    assert rows[-1].startswith("*") and not rows[0].startswith("*")

    out = await asyncio.to_thread(oodida, "versions", str(a), "--json")
    table = __import__("json").loads(out.stdout)
    assert [v["code_hash"] for v in table["versions"]] == [H[V1.name], H[V2.name], H[V1.name]]

    client = await fleet.client()
    try:
        await finish(client, a)
    finally:
        await client.close()


@pytest.mark.timeout(90)
async def test_a_task_cancelled_in_the_middle_of_a_sandbox_call_leaves_the_worker_alone(fleet):
    slow = ModuleSource(
        name="slow.py",
        source=(
            "def on_board(window, params, state):\n"
            "    n = 0\n"
            "    for i in range(params['loops']):\n"
            "        n += i\n"
            "    return {'version': 9, 'n': n}\n"
        ),
    )

    client = await fleet.client()
    try:
        a = (await client.submit(spec(V1))).assignment  # every agent has its worker running
        await wait_iterations(client, a, 1)
        await finish(client, a)
        before = await processes(client)
        while True:  # agents report every 0.5 s: a worker started just now shows in the next report
            await asyncio.sleep(1.1)
            if (settled := await processes(client)) == before:
                break
            before = settled
        # the calls outlive the deadline, so the server cancels every vehicle's task mid-call
        b = (await client.submit(spec(slow, iterations=2, deadline=0.5, params={"loops": 20_000_000}))).assignment
        got = [r async for r in client.results(b, follow=True) if isinstance(r, IterationReport)]
        await asyncio.sleep(3.0)  # the abandoned calls run to their end
        after = await processes(client)
    finally:
        await client.close()
    assert [r.status for r in got] == ["failed", "failed"] and all(sorted(r.missing) == fleet.vehicle_ids for r in got)
    # Same processes (agents, their zygotes, the server), none replaced: each agent
    # started exactly one worker more, assignment b's own, and restarted none.
    assert after.keys() == before.keys()
    for name, (pid, sandbox) in after.items():
        was_pid, was_sandbox = before[name]
        assert pid == was_pid, name
        if name == "server":
            assert sandbox == was_sandbox, name  # the server runs no module of b's
            continue
        (zygote, started, restarts), (was_zygote, was_started, was_restarts) = sandbox, was_sandbox
        assert zygote == was_zygote and restarts == was_restarts and started == was_started + 1, (name, sandbox)
