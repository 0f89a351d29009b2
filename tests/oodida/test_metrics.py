"""The address rule of `[metrics]` and the exporter's life, over real HTTP."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from oodida.core.metrics import Exporter, MetricsError, listen_problem, split_listen
from oodida.testing import REPO
from tests.helpers import eventually


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("127.0.0.1:9470", "127.0.0.1", 9470), ("[::1]:9470", "::1", 9470), ("localhost:0", "localhost", 0),
     ("0.0.0.0:80", "0.0.0.0", 80)],
)
def test_listen_splits_into_host_and_port(text, host, port):
    assert split_listen(text) == (host, port)


@pytest.mark.parametrize(
    ("text", "reason"),
    [("9470", "write HOST:PORT"), (":9470", "write HOST:PORT"), ("127.0.0.1:", "write HOST:PORT"),
     ("127.0.0.1:x", "write HOST:PORT"), ("127.0.0.1:65536", "over 65535"), ("::1:9470", "in brackets"),
     ("[::1:9470", "in brackets"), ("[::1]x:9470", "in brackets")],
)
def test_a_malformed_listen_says_how_to_write_it(text, reason):
    with pytest.raises(ValueError, match=reason):
        split_listen(text)


def test_only_loopback_without_remote():
    for loopback in ("127.0.0.1:9470", "127.9.9.9:1", "[::1]:9470", "localhost:9470"):
        assert listen_problem(loopback, remote=False) is None
    for other in ("0.0.0.0:9470", "[::]:9470", "10.0.0.7:9470", "metrics.example.com:9470"):
        problem = listen_problem(other, remote=False)
        assert problem is not None and "remote = true" in problem and "without authentication" in problem
        assert listen_problem(other, remote=True) is None


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.mark.timeout(30)
async def test_the_exporter_serves_its_own_registry_measures_lag_and_lets_its_port_go():
    registry = CollectorRegistry()
    counter = Counter("oodida_test_events", "events", registry=registry)
    lags: list[float] = []

    exporter = Exporter(registry, "127.0.0.1:0")
    exporter.start(lags.append)
    try:
        counter.inc(3)
        samples = await asyncio.to_thread(_scrape, exporter.port)
        assert samples["oodida_test_events_total"] == 3
        assert "oodida_test_events_created" not in samples  # no _created series
        assert "process_cpu_seconds_total" not in samples  # not the global default registry
        await eventually(lambda: lags, what="the exporter to measure the loop's lag")
        assert all(lag >= 0 for lag in lags)
        port = exporter.port
    finally:
        exporter.stop()

    # a restarted service gets its port back at once
    exporter = Exporter(registry, f"127.0.0.1:{port}")
    exporter.start()
    exporter.stop()


async def test_a_taken_port_is_a_metrics_error_naming_the_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]

        with pytest.raises(MetricsError, match=rf"cannot listen on 127.0.0.1:{port}: Address already in use"):
            Exporter(CollectorRegistry(), f"127.0.0.1:{port}").start()


def test_without_metrics_prometheus_client_is_not_imported():
    code = "import sys, server.app, agent.main; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
