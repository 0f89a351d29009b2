"""The server's Prometheus metrics: one registry per process, one call per event.

The code that sees an event calls one function here (`handshake_accepted`,
`result_received`, `iteration_closed`, ...); what is a state rather than an event
(vehicles connected, assignments running, sandbox workers started) is read from the
`Server` when Prometheus scrapes, so it costs nothing in between. No label names a
vehicle or an analyst: a fleet of 10,000 would make 10,000 series of each metric.
Refusal reasons are a fixed set (`REFUSAL_REASONS`), never a peer's text.

The counters live as long as the process (several `Server`s in one process, as in
tests, add up); the page is served only while a server with `[metrics]` runs.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from oodida.metrics import LAG_BUCKETS, Exporter

if TYPE_CHECKING:
    from server.app import Server
    from server.config import Metrics

REGISTRY = CollectorRegistry()

REFUSAL_REASONS = (
    "busy",  # over max_connections or max_handshakes
    "timeout",  # no hello or proof within handshake_timeout
    "malformed",  # a broken hello or proof
    "version",  # a protocol version this server does not speak
    "unknown_identity",  # no credential of that name
    "revoked",
    "expired",
    "wrong_role",  # e.g. a reader's credential presented as a vehicle
    "certificate",  # a client certificate missing, or for someone else
    "wrong_proof",  # wrong secret (or a replayed handshake)
)
SANDBOX_OUTCOMES = ("ok", "timeout", "crash", "memory", "error")  # error: every other rule the module broke
ITERATION_STATUSES = ("complete", "quorum", "partial", "failed", "cancelled")
# seconds: an iteration takes its window's time plus the fleet's answer time
ITERATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
DEPLOY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

HANDSHAKES = Counter(
    "oodida_server_handshakes", "Handshakes that admitted a peer, by role.", ["role"], registry=REGISTRY
)
REFUSALS = Counter(
    "oodida_server_handshake_refusals",
    "Connections refused before or during the handshake, by reason.", ["reason"], registry=REGISTRY,
)
RESULTS_RECEIVED = Counter(
    "oodida_server_results_received", "Results that arrived from vehicles (duplicates and late ones included).",
    registry=REGISTRY,
)
RESULTS_STORED = Counter(
    "oodida_server_results_stored", "Results committed to the store for the first time (duplicates not).",
    registry=REGISTRY,
)
ITERATIONS = Counter(
    "oodida_server_iterations", "Iterations closed, by status.", ["status"], registry=REGISTRY
)
ITERATION_SECONDS = Histogram(
    "oodida_server_iteration_duration_seconds",
    "Round trip of an iteration: task sent to the fleet until its outcome is stored.",
    buckets=ITERATION_BUCKETS, registry=REGISTRY,
)
DEPLOY_SECONDS = Histogram(
    "oodida_server_deploy_duration_seconds",
    "A deploy or rollback, from accepted until its quorum acknowledged it or it gave up waiting.",
    ["side", "complete"], buckets=DEPLOY_BUCKETS, registry=REGISTRY,
)
SANDBOX_CALLS = Counter(
    "oodida_sandbox_calls", "Calls into the sandbox (off-board modules), by outcome.", ["outcome"], registry=REGISTRY
)
LOOP_LAG = Histogram(
    "oodida_server_event_loop_lag_seconds", "How late the event loop wakes a timer (sampled every 0.25 s).",
    buckets=LAG_BUCKETS, registry=REGISTRY,
)

for _reason in REFUSAL_REASONS:  # every series from the start: rate() needs the zero
    REFUSALS.labels(_reason)
for _outcome in SANDBOX_OUTCOMES:
    SANDBOX_CALLS.labels(_outcome)
for _status in ITERATION_STATUSES:
    ITERATIONS.labels(_status)
for _role in ("vehicle", "analyst", "reader"):
    HANDSHAKES.labels(_role)
for _side in ("on_board", "off_board"):
    for _complete in ("true", "false"):
        DEPLOY_SECONDS.labels(_side, _complete)


def handshake_accepted(role: str) -> None:
    HANDSHAKES.labels(role).inc()


def handshake_refused(reason: str) -> None:
    REFUSALS.labels(reason if reason in REFUSAL_REASONS else "malformed").inc()


def credential_refusal(credential: Any, now: float | None = None) -> str:
    """The reason, of `REFUSAL_REASONS`, for a credential whose `problem()` refused it
    (checked in the same order as `Credential.problem`)."""
    now = time.time() if now is None else now
    if credential.revoked_at is not None:
        return "revoked"
    if credential.expires is not None and now >= credential.expires:
        return "expired"
    return "wrong_role"


def result_received() -> None:
    RESULTS_RECEIVED.inc()


def results_stored(count: int) -> None:
    RESULTS_STORED.inc(count)


def iteration_closed(status: str, seconds: float) -> None:
    ITERATIONS.labels(status).inc()
    ITERATION_SECONDS.observe(seconds)


def deploy_ended(side: str, complete: bool, seconds: float) -> None:
    DEPLOY_SECONDS.labels(side, "true" if complete else "false").observe(seconds)


def sandbox_event(outcome: str) -> None:
    """The observer of the server's sandbox host (`SandboxHost.on_event`): "ok" or
    the rule a call broke."""
    SANDBOX_CALLS.labels(outcome if outcome in SANDBOX_OUTCOMES else "error").inc()


class _ServerState(Collector):
    """What the server holds now, read at scrape time (from the exporter's thread:
    only lengths and counters, nothing that iterates a dict the loop may change)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def collect(self) -> Any:
        s = self.server
        yield GaugeMetricFamily("oodida_server_vehicles_connected", "Vehicles with an open session.",
                                value=len(s.vehicles))
        yield GaugeMetricFamily("oodida_server_connections", "Open connections (vehicles, analysts, handshakes).",
                                value=len(s._connections))
        yield GaugeMetricFamily("oodida_server_handshakes_in_progress", "Connections between accept and the end "
                                "of their handshake.", value=s._handshaking)
        yield GaugeMetricFamily("oodida_server_assignments_running", "Assignments being run.", value=len(s.runners))
        stats = s.off_board.stats() or {}
        yield CounterMetricFamily("oodida_sandbox_worker_starts", "Sandbox workers started (the first, and each "
                                  "replacement after a timeout, crash or recycle).", value=stats.get("started", 0))
        yield CounterMetricFamily("oodida_sandbox_worker_restarts", "Sandbox workers replaced after a timeout or "
                                  "a death.", value=stats.get("restarts", 0))


def start(server: Server, settings: Metrics | None) -> Exporter | None:
    """Serve /metrics for `server` if `[metrics]` is configured; MetricsError with the
    reason if its address cannot be had. None when metrics are off."""
    if settings is None:
        return None
    server.off_board.on_event = sandbox_event
    exporter = Exporter(REGISTRY, settings.listen, (_ServerState(server),))
    exporter.start(LOOP_LAG.observe)
    return exporter


def stop(exporter: Exporter | None) -> None:
    if exporter is not None:
        exporter.stop()
