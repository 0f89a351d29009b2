"""The real `oodida agent` and `oodida server` processes as systemd sees them: a
notify socket (an AF_UNIX datagram socket, as systemd's), READY, STATUS, WATCHDOG at
half of WATCHDOG_USEC, STOPPING on SIGTERM and exit status 0, in bounded time."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oodida.testing import LocalFleet
from oodida.wire.messages import AssignmentSpec, IterationReport, WindowSpec
from tests.helpers import run

pytestmark = pytest.mark.integration

WATCHDOG_USEC = 1_000_000  # pings every 0.5 s


class NotifySocket:
    """systemd's end: collects the datagrams a service sends, with their arrival times."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def env(self) -> dict[str, str]:
        return {**os.environ, "NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)}

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30.0, since: int = 0) -> dict[str, str]:
        """The first message (at or after index `since`) with `key` (equal to, or
        containing, `value`); fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        index = since
        while True:
            while index < len(self.messages):
                fields = self.messages[index][1]
                index += 1
                if key in fields and (value is None or value in fields[key]):
                    return fields
            left = deadline - time.monotonic()
            assert left > 0, f"no {key}={value or ''} within {timeout} s; got {[m for _, m in self.messages]}"
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            self.messages.append((time.monotonic(), fields))

    def pings(self, seconds: float) -> list[float]:
        """Arrival times of WATCHDOG=1 over the next `seconds` s."""
        start = len(self.messages)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            self.messages.append((time.monotonic(), dict(line.split("=", 1) for line in data.decode().split("\n"))))
        return [t for t, m in self.messages[start:] if m.get("WATCHDOG") == "1"]

    def close(self) -> None:
        self.sock.close()


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "oodida", *args], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env,
        )


def assert_pings_at_half_the_period(times: list[float]) -> None:
    gaps = [b - a for a, b in itertools.pairwise(times)]
    half = WATCHDOG_USEC / 2e6
    assert len(times) >= 4, times
    assert all(0.6 * half < g < 1.6 * half for g in gaps), gaps


def test_agent_notifies_and_a_sigterm_lets_the_running_task_finish(tmp_path):
    fleet = LocalFleet(tmp_path, vehicles=1, speed=1.0, loop=True, signals=["SPEED"])
    notify = NotifySocket(tmp_path / "notify")
    agent = None
    try:
        fleet.start_server()
        config = fleet.write_agent_config(0)
        agent = spawn(["agent", "--config", str(config)], notify.env(), tmp_path / "agent.log")
        ready = notify.wait_for("READY", "1")
        assert "source(s) running" in ready["STATUS"]
        notify.wait_for("STATUS", f"connected to 127.0.0.1:{fleet.port};")
        assert_pings_at_half_the_period(notify.pings(3.0))

        # an assignment whose window is the next 6 s of signal time: the task runs
        # that long on the agent, and gets SIGTERM halfway
        spec = AssignmentSpec(
            signals=["SPEED"], window=WindowSpec(amount=6.0, kind="next"), on_board=["count"], deadline=60.0
        )

        async def submit() -> int:
            client = await fleet.client()
            try:
                return (await client.submit(spec)).assignment
            finally:
                await client.close()

        assignment = run(submit())
        seen = len(notify.messages)
        notify.wait_for("STATUS", "1 task(s) running", since=seen)
        sent = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        stopping = notify.wait_for("STOPPING", "1", timeout=5, since=seen)
        assert "1 task(s) finishing" in stopping["STATUS"]
        assert agent.wait(30) == 0
        assert time.monotonic() - sent > 1.0  # it waited for the task rather than dropping it

        async def results():
            client = await fleet.client()
            try:
                return [r async for r in client.results(assignment, follow=True) if isinstance(r, IterationReport)]
            finally:
                await client.close()

        (report,) = run(results())
        assert report.status == "complete", report
        answer = report.vehicles["car-1"]
        assert answer.ok and answer.samples["SPEED"] > 0
        log = (tmp_path / "agent.log").read_text()
        assert "waiting up to" in log and "for the next start" not in log and "are lost" not in log
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()
        fleet.stop()
        notify.close()


def test_agent_without_a_server_stops_at_once_and_says_so(tmp_path):
    """No link, no task: SIGTERM -> STOPPING=1 and exit 0 well within the grace period."""
    fleet = LocalFleet(tmp_path, vehicles=1, speed=1.0, loop=True, signals=["SPEED"])
    notify = NotifySocket(tmp_path / "notify")
    agent = spawn(["agent", "--config", str(fleet.write_agent_config(0))], notify.env(), tmp_path / "agent.log")
    try:
        ready = notify.wait_for("READY", "1")
        assert f"not connected to 127.0.0.1:{fleet.port}" in ready["STATUS"]
        assert_pings_at_half_the_period(notify.pings(2.5))  # a lost server is not a dead agent
        agent.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING", "1", timeout=5)
        assert agent.wait(10) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        notify.close()


def test_server_notifies_ready_watchdog_and_stopping(tmp_path):
    fleet = LocalFleet(tmp_path, vehicles=0)
    notify = NotifySocket(tmp_path / "notify")
    server = spawn(["server", "--config", str(fleet.write_server_config())], notify.env(), tmp_path / "server.log")
    try:
        ready = notify.wait_for("READY", "1")
        assert ready["STATUS"] == f"listening on 127.0.0.1:{fleet.port}"
        with socket.create_connection(("127.0.0.1", fleet.port), timeout=5):
            pass  # READY meant listening
        assert_pings_at_half_the_period(notify.pings(2.5))
        server.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING", "1", timeout=5)
        assert server.wait(10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        notify.close()


@pytest.mark.parametrize("service", ["agent", "server"])
def test_a_bad_config_exits_2_so_the_unit_does_not_restart(service, tmp_path):
    """The units say RestartPreventExitStatus=2: a restart cannot mend a config."""
    config = tmp_path / "bad.toml"
    config.write_text("this is = not [valid toml\n")
    out = subprocess.run(
        [sys.executable, "-m", "oodida", service, "--config", str(config)], capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert out.returncode == 2 and "not valid TOML" in out.stderr, out.stderr
