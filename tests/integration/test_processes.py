"""Process-level behaviour: the demo runs and cleans up, agents outlive the server."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from oodida.testing import LocalFleet
from oodida.wire.messages import AssignmentSpec, WindowSpec
from tests.helpers import processes_mentioning, run

pytestmark = pytest.mark.integration


def test_demo_runs_to_the_end_and_exits_0(tmp_path):
    workdir = tmp_path / "demo"
    out = subprocess.run(
        [sys.executable, "-m", "oodida", "demo", "--speed", "5", "--workdir", str(workdir)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "5 vehicles connected" in out.stdout
    assert out.stdout.count("· complete ·") == 3 + 4 + 5  # every iteration of all three assignments
    for assignment in (1, 2, 3):
        assert f"assignment {assignment}: done" in out.stdout
    assert "share_over=" in out.stdout  # the analyst's own module ran, off board too
    assert "5 of 5 run " in out.stdout and "excess=" in out.stdout  # version 2 deployed midway, and ran
    assert processes_mentioning(str(workdir)) == []


def test_ctrl_c_stops_the_demo_and_every_process_it_started(tmp_path):
    workdir = tmp_path / "demo"
    with subprocess.Popen(
        [sys.executable, "-m", "oodida", "demo", "--workdir", str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as demo:
        try:
            for line in demo.stdout:  # wait until the fleet runs an assignment
                if line.startswith("assignment 1"):
                    break
            children = [pid for pid in processes_mentioning(str(workdir)) if pid != demo.pid]
            assert len(children) == 6  # server + 5 agents
            demo.send_signal(signal.SIGINT)
            assert demo.wait(30) == 130
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
    deadline = time.monotonic() + 10
    while processes_mentioning(str(workdir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(str(workdir)) == []


def test_agents_reconnect_after_the_server_restarts(tmp_path):
    fleet = LocalFleet(tmp_path, vehicles=2, speed=2.0, loop=True, signals=["SPEED"])
    spec = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1.0, kind="latest"), on_board=["count"])
    with fleet:
        fleet.start()

        async def once():
            client = await fleet.client()
            try:
                await fleet.wait_connected(client)
                submitted = await client.submit(spec)
                return [r async for r in client.results(submitted.assignment, follow=True)]
            finally:
                await client.close()

        first = run(once())
        assert first[0].status == "complete"
        fleet.server.kill()
        fleet.server.wait()
        time.sleep(1.0)  # agents see the loss and back off
        fleet.start_server()  # same port, same database
        second = run(once())
        assert second[0].status == "complete" and second[0].assignment == first[0].assignment + 1
        agent_log = (tmp_path / "car-1.log").read_text()
        assert "lost the server" in agent_log and agent_log.count("connected to 127.0.0.1") >= 2
