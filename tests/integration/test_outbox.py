"""Nothing lost on the vehicle: the outbox with real server and agent processes.

The server goes away while the agents compute (killed: a crash, not a goodbye); the
agents finish their tasks and keep the results in their SQLite outbox, through a
SIGKILL of their own if need be, and deliver them once the server is back. Past its
limit an outbox drops the oldest results, says which, and the vehicle's status
carries the count to `oodida status`.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from oodida.commands.render import render_status
from oodida.testing import LocalFleet
from oodida.wire.messages import AssignmentSpec, WindowSpec
from tests.helpers import eventually_blocking, run

pytestmark = pytest.mark.integration

# each task waits for the next 6 s of its vehicle's drive: long enough to kill the server meanwhile
SPEC = AssignmentSpec(
    signals=["SPEED"], window=WindowSpec(amount=6.0, kind="next"), on_board=["count"], iterations=1, deadline=120,
)


async def submit_and_wait_running(fleet: LocalFleet, count: int = 1) -> list[int]:
    """Submit `count` assignments; return once every vehicle runs all of their tasks."""
    client = await fleet.client()
    try:
        await fleet.wait_connected(client)
        assignments = [(await client.submit(SPEC)).assignment for _ in range(count)]
        deadline = time.monotonic() + 30
        while True:
            status = await client.status()
            running = {v.vehicle for v in status.vehicles if v.status is not None and v.status.running == count}
            if running == set(fleet.vehicle_ids):
                return assignments
            assert time.monotonic() < deadline, f"tasks not running everywhere: {status.vehicles}"
            await asyncio.sleep(0.1)
    finally:
        await client.close()


def kill_server(fleet: LocalFleet) -> None:
    assert fleet.server is not None
    fleet.server.kill()
    fleet.server.wait(10)


def agent_log(fleet: LocalFleet, vehicle: str) -> str:
    return (fleet.workdir / f"{vehicle}.log").read_text(errors="replace")


def wait_for_log(fleet: LocalFleet, vehicle: str, text: str, count: int = 1, timeout: float = 60) -> None:
    try:
        eventually_blocking(lambda: agent_log(fleet, vehicle).count(text) >= count, timeout,
                            what=f"{vehicle} to log {text!r} {count} time(s)")
    except AssertionError as exc:
        raise AssertionError(f"{exc}:\n{agent_log(fleet, vehicle)[-3000:]}") from None


async def wait_delivered(fleet: LocalFleet, timeout: float = 60) -> str:
    """Until every vehicle is connected with nothing left in its outbox; what
    `oodida status` then prints."""
    client = await fleet.client()
    try:
        await fleet.wait_connected(client)
        deadline = time.monotonic() + timeout
        while True:
            status = await client.status()
            if all(v.status is not None and v.status.pending_results == 0 for v in status.vehicles):
                return render_status(status)
            assert time.monotonic() < deadline, f"results still unsent: {status.vehicles}"
            await asyncio.sleep(0.1)
    finally:
        await client.close()


def stored(fleet: LocalFleet) -> list[tuple[int, int, str]]:
    """(assignment, iteration, vehicle) of every result in the server's database."""
    db = sqlite3.connect(fleet.workdir / "server.sqlite3")
    try:
        return db.execute("SELECT assignment, iteration, vehicle FROM results ORDER BY 1, 2, 3").fetchall()
    finally:
        db.close()


def outbox_rows(fleet: LocalFleet, vehicle: str, path: Path | None = None) -> list[tuple[int, int]]:
    """What an agent's outbox file holds; only while no agent has it open (it locks it)."""
    db = sqlite3.connect(path or fleet.outbox_path(vehicle))
    try:
        return db.execute("SELECT assignment, iteration FROM results ORDER BY seq").fetchall()
    finally:
        db.close()


def test_results_computed_while_the_server_is_down_arrive_once_it_is_back(tmp_path):
    fleet = LocalFleet(tmp_path, vehicles=3, speed=1.0, loop=True, signals=["SPEED"])
    with fleet:
        fleet.start()
        (assignment,) = run(submit_and_wait_running(fleet), timeout=90)
        kill_server(fleet)
        for vehicle in fleet.vehicle_ids:  # the tasks finish without a server
            wait_for_log(fleet, vehicle, f"assignment {assignment} iteration 1: ok")
        time.sleep(1.0)  # the agents back off and retry meanwhile
        fleet.start_server()  # same port, same database
        run(wait_delivered(fleet), timeout=90)
        fleet.stop()
    assert stored(fleet) == [(assignment, 1, v) for v in fleet.vehicle_ids]
    for vehicle in fleet.vehicle_ids:
        log = agent_log(fleet, vehicle)
        assert "lost the server" in log
        assert log.count(f"assignment {assignment} iteration 1:") == 1  # computed once
        assert outbox_rows(fleet, vehicle) == []  # acknowledged, so deleted


def test_agents_killed_or_stopped_with_results_pending_deliver_them_after_their_restart(tmp_path):
    """car-1 is SIGKILLed, car-2 stopped (SIGTERM), both while the server is down."""
    fleet = LocalFleet(tmp_path, vehicles=2, speed=1.0, loop=True, signals=["SPEED"])
    with fleet:
        fleet.start()
        (assignment,) = run(submit_and_wait_running(fleet), timeout=90)
        kill_server(fleet)
        for vehicle in fleet.vehicle_ids:
            wait_for_log(fleet, vehicle, f"assignment {assignment} iteration 1: ok")
        fleet.kill_agent("car-1")  # SIGKILL: no goodbye, no flush
        fleet.kill_agent("car-2", signal.SIGTERM)
        assert fleet.agents["car-2"].returncode == 0
        assert f"1 result(s) not acknowledged by the server wait in {fleet.outbox_path('car-2')} for the next start: " \
               f"{assignment}/1" in agent_log(fleet, "car-2")
        for vehicle in fleet.vehicle_ids:
            assert outbox_rows(fleet, vehicle) == [(assignment, 1)]  # on disk when it died or stopped
        fleet.start_server()
        fleet.start_agent(0)
        fleet.start_agent(1)
        run(wait_delivered(fleet), timeout=90)
        fleet.stop()
    assert stored(fleet) == [(assignment, 1, "car-1"), (assignment, 1, "car-2")]
    for vehicle in fleet.vehicle_ids:
        log = agent_log(fleet, vehicle)
        assert "holds 1 result(s) from before the restart" in log
        assert log.count(f"assignment {assignment} iteration 1:") == 1  # sent after the restart, not computed again
        assert outbox_rows(fleet, vehicle) == []


def test_past_its_limit_the_outbox_drops_the_oldest_and_the_status_says_so(tmp_path):
    fleet = LocalFleet(tmp_path, vehicles=1, speed=1.0, loop=True, signals=["SPEED"],
                       agent_outbox={"max_results": 2})
    with fleet:
        fleet.start()
        assignments = run(submit_and_wait_running(fleet, count=4), timeout=90)
        kill_server(fleet)
        for a in assignments:
            wait_for_log(fleet, "car-1", f"assignment {a} iteration 1: ok")
        log = agent_log(fleet, "car-1")
        dropped = [int(a) for a in re.findall(
            r"outbox full \(max_results = 2\): dropped the oldest result, assignment (\d+) iteration 1", log
        )]
        assert len(dropped) == 2 and "2 dropped so far" in log, log[-3000:]
        kept = [a for a in assignments if a not in dropped]
        fleet.start_server()
        shown = run(wait_delivered(fleet), timeout=90)
        fleet.stop()
    assert "outbox: 2 result(s) dropped over its limits" in shown
    assert stored(fleet) == [(a, 1, "car-1") for a in sorted(kept)]


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of 512 kB (tmpfs), where a full disk gives the real ENOSPC."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root, to mount a small tmpfs")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mountpoint)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(disk: Path) -> Path:
    """Take every free block of `disk`, with a file."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_disk_keeps_the_result_in_memory_until_space_returns(tmp_path, small_disk):
    fleet = LocalFleet(tmp_path, vehicles=1, speed=1.0, loop=True, signals=["SPEED"],
                       agent_outbox={"path": str(small_disk / "car-1.outbox.sqlite3")})
    with fleet:
        fleet.start()
        run(wait_delivered(fleet), timeout=90)  # connected: its outbox is open
        filler = fill(small_disk)
        (assignment,) = run(submit_and_wait_running(fleet), timeout=90)
        kill_server(fleet)
        wait_for_log(fleet, "car-1", f"assignment {assignment} iteration 1: ok")
        wait_for_log(fleet, "car-1", f"{assignment}/1")  # held in memory, said so
        log = agent_log(fleet, "car-1")
        assert "cannot write (database or disk is full" in log and "1 result(s) held in memory until it can" in log
        assert fleet.agents["car-1"].poll() is None  # nothing crashed
        filler.unlink()  # space returns: the periodic retry writes it
        wait_for_log(fleet, "car-1", "writable again: 1 result(s) held in memory are on disk", timeout=30)
        fleet.kill_agent("car-1")  # so it is on disk, not only in memory
        assert outbox_rows(fleet, "car-1", small_disk / "car-1.outbox.sqlite3") == [(assignment, 1)]
        fleet.start_server()
        fleet.start_agent(0)
        run(wait_delivered(fleet), timeout=90)
        fleet.stop()
    assert stored(fleet) == [(assignment, 1, "car-1")]
