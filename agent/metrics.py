"""The agent's Prometheus metrics: one registry per process, one call per event.

Events (a result computed, a handshake refused, a sandbox call's outcome) are
counted where they happen, with one call each. Everything the agent already counts
or holds (frames per source, unknown and malformed frames, the outbox's depth and
drops, the link, sandbox workers started) is read from the `Agent` when Prometheus
scrapes: the pumps and the outbox are not touched. The per-source labels are the
configured sources (at most 64), so their number is bounded by the config file.

One agent per process is the rule on a vehicle; simulated fleets that run several
in one process share these counters. Without `[metrics]` nothing is counted and
prometheus-client is not even imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oodida.core.metrics import (
    SANDBOX_OUTCOMES,
    Exporter,
    loop_lag_histogram,
    sandbox_calls_counter,
    sandbox_worker_families,
)
from oodida.wire.states import SourcePhase

if TYPE_CHECKING:
    from oodida.agent.main import Agent
    from oodida.core.metrics import Metrics
    from oodida.wire.messages import Result

# seconds a task takes: mostly waiting for its window to fill, then the method
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class _Metrics:
    """The process's registry and its metrics, made by the first `start`: an agent
    without `[metrics]` never imports prometheus-client (40 ms and 3 MB) and counts
    nothing."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = registry = CollectorRegistry()
        self.results = Counter(
            "oodida_agent_results", "Results computed (put in the outbox), by outcome: ok, or error with the "
            "reason sent to the server.", ["outcome"], registry=registry,
        )
        self.task_seconds = Histogram(
            "oodida_agent_task_duration_seconds",
            "A task from its arrival to its result: the window's wait and the method.",
            buckets=TASK_BUCKETS, registry=registry,
        )
        self.connect_failures = Counter(
            "oodida_agent_connect_failures", "Connections to the server that failed, by reason: refused (the "
            "server refused the handshake: credential, version) or unreachable (network, TLS, timeout).",
            ["reason"], registry=registry,
        )
        self.sandbox_calls = sandbox_calls_counter(registry, "on-board")
        self.loop_lag = loop_lag_histogram(registry, "agent")
        # every series from the start: rate() and increase() need the zero
        for outcome in ("ok", "error"):
            self.results.labels(outcome)
        for reason in ("refused", "unreachable"):
            self.connect_failures.labels(reason)


_m: _Metrics | None = None


def result_computed(result: Result) -> None:
    if _m is not None:
        _m.results.labels("ok" if result.ok else "error").inc()
        _m.task_seconds.observe(result.elapsed)


def connect_failed(refused: bool) -> None:
    if _m is not None:
        _m.connect_failures.labels("refused" if refused else "unreachable").inc()


def sandbox_event(outcome: str) -> None:
    """The observer of the agent's sandbox host (`SandboxHost.on_event`)."""
    if _m is not None:
        _m.sandbox_calls.labels(outcome if outcome in SANDBOX_OUTCOMES else "error").inc()


class _AgentState:
    """What the agent holds now, read at scrape time from the exporter's thread:
    plain counters and lengths, no lock taken, no SQLite touched."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        a = self.agent
        pumps = list(a.pumps)
        frames = CounterMetricFamily("oodida_agent_frames", "Frames (CAN) or sentences (GPS) read, per source.",
                                     labels=["source"])
        unknown = CounterMetricFamily("oodida_agent_unknown_frames", "Frames the source's decoder does not "
                                      "describe (other ids, other sentences), per source.", labels=["source"])
        malformed = CounterMetricFamily("oodida_agent_malformed_frames", "Frames that do not decode (short, bad "
                                        "checksum, out of range), per source.", labels=["source"])
        running = GaugeMetricFamily("oodida_agent_source_running", "1 while the source's reader runs, 0 once it "
                                    "ended or failed.", labels=["source"])
        for pump in pumps:
            frames.add_metric([pump.name], pump.frames)
            unknown.add_metric([pump.name], pump.decoder.unknown_frames)
            malformed.add_metric([pump.name], pump.decoder.malformed_frames)
            running.add_metric([pump.name], 1 if pump.state == SourcePhase.RUNNING else 0)
        yield from (frames, unknown, malformed, running)
        outbox = a.outbox
        yield GaugeMetricFamily("oodida_agent_outbox_results", "Results waiting for the server's acknowledgement.",
                                value=len(outbox))
        yield GaugeMetricFamily("oodida_agent_outbox_bytes", "Bytes of the results waiting.", value=outbox.size)
        yield GaugeMetricFamily("oodida_agent_outbox_unsaved_results", "Results held in memory only, because the "
                                "disk refused them.", value=outbox.unsaved)
        yield CounterMetricFamily("oodida_agent_outbox_dropped", "Results dropped, oldest first, over the outbox's "
                                  "limits (over the life of its file).", value=outbox.dropped)
        yield GaugeMetricFamily("oodida_agent_connected", "1 while the link to the server is up.",
                                value=1 if a.uplink.channel is not None else 0)
        yield CounterMetricFamily("oodida_agent_connections", "Handshakes with the server that succeeded.",
                                  value=a.uplink.connections)
        yield GaugeMetricFamily("oodida_agent_tasks_running", "Tasks being computed.", value=len(a.runner.running))
        yield from sandbox_worker_families(a.runner.modules.stats())


def start(agent: Agent, settings: Metrics | None) -> Exporter | None:
    """Serve /metrics for `agent` if `[metrics]` is configured; MetricsError with the
    reason if its address cannot be had. None when metrics are off."""
    global _m
    if settings is None:
        return None
    if _m is None:
        _m = _Metrics()
    agent.runner.modules.on_event = sandbox_event
    exporter = Exporter(_m.registry, settings.listen, (_AgentState(agent),))
    exporter.start(_m.loop_lag.observe)
    return exporter


def stop(exporter: Exporter | None) -> None:
    if exporter is not None:
        exporter.stop()
