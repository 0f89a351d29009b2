"""/metrics of a real server and real agents, scraped over HTTP and read with
prometheus-client's own parser: each metric moves when its event happens."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from oodida.link import HandshakeRefused, connect
from oodida.link.tls import client_context
from oodida.testing import REPO, free_port
from oodida.wire import Role
from oodida.wire.messages import AssignmentSpec, DeployEnd, IterationReport, ModuleSource, WindowSpec
from tests.fleets import FleetSpec

pytestmark = pytest.mark.integration

SPEEDING = ModuleSource(name="speeding.py", source=(REPO / "examples" / "speeding.py").read_text())
FOREVER = ModuleSource(
    name="forever.py", source="def on_board(window, params, state):\n    while True:\n        pass\n"
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of the page: (name, labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels} not on the page: {sorted(k for k in samples if k[0] == name)}"
    return samples[key]


def wait_for(url: str, check: Callable[[Samples], bool], timeout: float = 60.0) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, f"{url}: not as expected within {timeout} s"
        time.sleep(0.2)


FLEET = FleetSpec.of("metrics", vehicles=2, speed=1.0, loop=True, signals=["SPEED"],
                     agent_sandbox={"call_timeout": 1.0}, metrics=True)


def test_a_vehicle_that_connects_is_counted_on_both_sides(fleet):
    server = fleet.metrics_url()
    before = wait_for(server, lambda s: value(s, "oodida_server_vehicles_connected") == 2)
    assert value(before, "oodida_server_handshakes_total", role="vehicle") >= 2
    assert value(before, "oodida_server_handshakes_total", role="analyst") >= 1  # start_connected's client
    assert value(before, "oodida_server_event_loop_lag_seconds_count") > 0
    agent = scrape(fleet.metrics_url("car-1"))
    assert value(agent, "oodida_agent_connected") == 1
    assert value(agent, "oodida_agent_connections_total") >= 1

    fleet.kill_agent("car-2")
    wait_for(server, lambda s: value(s, "oodida_server_vehicles_connected") == 1)
    fleet.start_agent(1)
    after = wait_for(server, lambda s: value(s, "oodida_server_vehicles_connected") == 2)
    assert value(after, "oodida_server_handshakes_total", role="vehicle") == (
        value(before, "oodida_server_handshakes_total", role="vehicle") + 1
    )
    assert not any(name.startswith("oodida_server") and "car-" in str(labels) for name, labels in after)


def test_frames_per_source_grow_while_the_log_replays(fleet):
    url = fleet.metrics_url("car-1")
    first = scrape(url)
    sources = [dict(labels)["source"] for name, labels in first if name == "oodida_agent_frames_total"]
    assert len(sources) == 1 and "rav4" in sources[0]
    source = sources[0]
    then = value(first, "oodida_agent_frames_total", source=source)
    later = wait_for(url, lambda s: value(s, "oodida_agent_frames_total", source=source) > then)
    assert value(later, "oodida_agent_source_running", source=source) == 1
    # the replayed drive has frames the DBC does not describe: counted, per source
    unknown = value(later, "oodida_agent_unknown_frames_total", source=source)
    assert 0 < unknown < value(later, "oodida_agent_frames_total", source=source)
    assert value(later, "oodida_agent_malformed_frames_total", source=source) >= 0
    assert value(later, "oodida_agent_event_loop_lag_seconds_count") > 0


async def test_refused_handshakes_are_counted_by_reason(fleet):
    url = fleet.metrics_url()
    before = scrape(url)
    context = client_context(ca=str(fleet.deployment.vehicles["car-1"] / "ca.pem"))

    async def refused(identity: str, secret: str) -> None:
        with pytest.raises(HandshakeRefused):
            await connect("127.0.0.1", fleet.port, role=Role.VEHICLE, identity=identity, secret=secret,
                          ssl_context=context)

    await refused("car-1", "not-the-secret-of-car-1")
    await refused("car-99", "x" * 43)
    after = scrape(url)
    for reason in ("wrong_proof", "unknown_identity"):
        assert value(after, "oodida_server_handshake_refusals_total", reason=reason) == (
            value(before, "oodida_server_handshake_refusals_total", reason=reason) + 1
        )
    assert value(after, "oodida_server_handshake_refusals_total", reason="revoked") == (
        value(before, "oodida_server_handshake_refusals_total", reason="revoked")
    )


async def test_results_stored_and_iterations_closed_move_the_counters(fleet):
    server, agent = fleet.metrics_url(), fleet.metrics_url("car-1")
    before, agent_before = scrape(server), scrape(agent)
    spec = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=0.5, kind="next"), iterations=2,
                          on_board=["mean"], deadline=30)

    async with await fleet.client() as client:
        submitted = await client.submit(spec)
        items = [r async for r in client.results(submitted.assignment, follow=True)]
    reports = [r for r in items if isinstance(r, IterationReport)]
    assert [r.status for r in reports] == ["complete", "complete"]
    after, agent_after = scrape(server), scrape(agent)

    def moved(samples_before: Samples, samples_after: Samples, name: str, **labels: str) -> float:
        return value(samples_after, name, **labels) - value(samples_before, name, **labels)

    assert moved(before, after, "oodida_server_results_received_total") == 4
    assert moved(before, after, "oodida_server_results_stored_total") == 4
    assert moved(before, after, "oodida_server_iterations_total", status="complete") == 2
    assert moved(before, after, "oodida_server_iteration_duration_seconds_count") == 2
    assert moved(before, after, "oodida_server_iteration_duration_seconds_sum") > 0
    assert moved(agent_before, agent_after, "oodida_agent_results_total", outcome="ok") == 2
    assert moved(agent_before, agent_after, "oodida_agent_task_duration_seconds_count") == 2
    assert value(agent_after, "oodida_agent_outbox_results") == 0  # acknowledged
    assert value(agent_after, "oodida_agent_outbox_dropped_total") == 0


@pytest.mark.timeout(120)
async def test_a_module_that_loops_forever_is_killed_and_counted(fleet):
    """A module in force on board, then a deploy of one that never returns: the deploy
    is timed, the worker is killed at the call's budget and a fresh one started, the
    iteration fails; the off-board step ran in the server's sandbox meanwhile."""
    server, agent = fleet.metrics_url(), fleet.metrics_url("car-1")
    before, agent_before = scrape(server), scrape(agent)
    spec = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=0.3, kind="next"), iterations=0,
                          on_board_module=SPEEDING, off_board_module=SPEEDING, params={"limit": 65.0}, deadline=15)

    # two connections: a followed results stream holds its client until it ends
    async with await fleet.client() as client, await fleet.client() as follower:
        submitted = await client.submit(spec)
        a = submitted.assignment
        reports = follower.results(a, follow=True)
        first = await anext(reports)
        assert isinstance(first, IterationReport) and first.status == "complete"
        end = [e async for e in client.deploy(assignment=a, side="on_board", module=FOREVER)][-1]
        assert isinstance(end, DeployEnd) and end.complete
        seen = [first]
        async for report in reports:  # until an iteration ran the new version
            seen.append(report)
            if isinstance(report, IterationReport) and report.status == "failed":
                break
        await client.cancel(a)
        await reports.aclose()
        reports = seen
    assert reports[-1].status == "failed"
    after = scrape(server)
    agent_after = wait_for(agent, lambda s: value(s, "oodida_sandbox_worker_starts_total")
                           > value(agent_before, "oodida_sandbox_worker_starts_total") + 1)

    def moved(samples_before: Samples, samples_after: Samples, name: str, **labels: str) -> float:
        return value(samples_after, name, **labels) - value(samples_before, name, **labels)

    assert moved(agent_before, agent_after, "oodida_sandbox_calls_total", outcome="timeout") >= 1
    assert moved(agent_before, agent_after, "oodida_sandbox_calls_total", outcome="ok") >= 1
    assert moved(agent_before, agent_after, "oodida_sandbox_worker_restarts_total") >= 1
    assert moved(agent_before, agent_after, "oodida_agent_results_total", outcome="error") >= 1
    assert moved(before, after, "oodida_server_deploy_duration_seconds_count", side="on_board", complete="true") == 1
    assert moved(before, after, "oodida_server_iterations_total", status="failed") >= 1
    assert moved(before, after, "oodida_sandbox_calls_total", outcome="ok") >= 1  # off board, on the server
    assert value(after, "oodida_sandbox_worker_starts_total") >= 1


def test_an_agent_the_server_refuses_counts_its_refusals(fleet, tmp_path: Path):
    """car-1's config with a wrong secret, as a second process: the server refuses it
    (wrong_proof) and the agent counts each refusal; the real car-1 stays connected."""
    secret = tmp_path / "secret"
    secret.write_text("not-the-secret-of-car-1\n")
    secret.chmod(0o600)
    port = free_port()
    text = (fleet.workdir / "car-1.toml").read_text()
    text = text.replace(str(fleet.deployment.vehicles["car-1"] / "secret"), str(secret))
    text = text.replace(f"127.0.0.1:{fleet.metrics_ports['car-1']}", f"127.0.0.1:{port}")
    config = tmp_path / "agent.toml"
    config.write_text(text.replace(str(fleet.outbox_path("car-1")), str(tmp_path / "outbox.sqlite3")))
    server = fleet.metrics_url()
    before = scrape(server)
    agent = subprocess.Popen([sys.executable, "-m", "oodida", "agent", "--config", str(config)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 60
        while True:
            try:
                samples = scrape(url)
                if value(samples, "oodida_agent_connect_failures_total", reason="refused") >= 1:
                    break
            except OSError:  # not listening yet
                pass
            assert time.monotonic() < deadline and agent.poll() is None, "the agent never counted a refusal"
            time.sleep(0.2)
        assert value(samples, "oodida_agent_connected") == 0
        assert value(samples, "oodida_agent_connections_total") == 0
    finally:
        agent.terminate()
        agent.wait(20)
    after = scrape(server)
    assert value(after, "oodida_server_handshake_refusals_total", reason="wrong_proof") >= (
        value(before, "oodida_server_handshake_refusals_total", reason="wrong_proof") + 1
    )
    assert value(after, "oodida_server_vehicles_connected") == 2


# --- start-up errors: one line, no traceback ----------------------------------------------


def _oodida(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oodida", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture
def taken_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_server_with_its_metrics_port_taken_says_so_in_one_line(tmp_path: Path, taken_port: int):
    config = tmp_path / "server.toml"
    config.write_text(f'database = "s.sqlite3"\n[listen]\nport = 0\nplain = true\n'
                      f'[metrics]\nlisten = "127.0.0.1:{taken_port}"\n')
    done = _oodida("server", "--config", str(config))
    assert done.returncode == 1  # not 2 (a config error): the port may be free when systemd tries again
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"oodida server: [metrics] cannot listen on 127.0.0.1:{taken_port}: Address already in use"
    )


def test_agent_with_its_metrics_port_taken_says_so_in_one_line(fleet, tmp_path: Path, taken_port: int):
    text = (fleet.workdir / "car-1.toml").read_text()  # a working config, but for its metrics port and outbox
    text = text.replace(f"127.0.0.1:{fleet.metrics_ports['car-1']}", f"127.0.0.1:{taken_port}")
    config = tmp_path / "agent.toml"
    config.write_text(text.replace(str(fleet.outbox_path("car-1")), str(tmp_path / "outbox.sqlite3")))
    done = _oodida("agent", "--config", str(config))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith(
        f"[metrics] cannot listen on 127.0.0.1:{taken_port}: Address already in use"
    )


@pytest.mark.parametrize(
    ("listen", "reason"),
    [
        ("9470", "write HOST:PORT"),
        ("127.0.0.1:70000", "port 70000 is over 65535"),
        ("::1:9470", "an IPv6 address goes in brackets"),
        ("0.0.0.0:9470", "is not a loopback address: the metrics page is plain HTTP without authentication"),
    ],
)
def test_a_bad_metrics_address_is_a_one_line_config_error(tmp_path: Path, listen: str, reason: str):
    config = tmp_path / "server.toml"
    config.write_text(f'[listen]\nplain = true\n[metrics]\nlisten = "{listen}"\n')
    done = _oodida("server", "--config", str(config))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"oodida server: {config}: ") and reason in line and "$.metrics" in line


def test_a_remote_metrics_address_is_taken_when_asked_for(tmp_path: Path):
    from oodida.server.config import load_server_config

    config = tmp_path / "server.toml"
    config.write_text('[listen]\nplain = true\n[metrics]\nlisten = "0.0.0.0:9470"\nremote = true\n')
    metrics = load_server_config(config).metrics
    assert metrics is not None and metrics.listen == "0.0.0.0:9470" and metrics.remote
    config.write_text('[listen]\nplain = true\n')
    assert load_server_config(config).metrics is None  # off by default

