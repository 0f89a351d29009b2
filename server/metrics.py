"""The server's Prometheus metrics: one registry per process, one call per event.

The code that sees an event calls one function here (`handshake_accepted`,
`result_received`, `iteration_closed`, ...); what is a state rather than an event
(vehicles connected, assignments running, sandbox workers started) is read from the
`Server` when Prometheus scrapes, so it costs nothing in between. No label names a
vehicle or an analyst: a fleet of 10,000 would make 10,000 series of each metric.
Refusal reasons are a fixed set (`REFUSAL_REASONS`), never a peer's text.

The counters live as long as the process (several `Server`s in one process, as in
tests, add up); the page is served only while a server with `[metrics]` runs.
Without `[metrics]` nothing is counted and prometheus-client is not even imported.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from oodida.core.metrics import (
    SANDBOX_OUTCOMES,
    Exporter,
    loop_lag_histogram,
    sandbox_calls_counter,
    sandbox_worker_families,
)

if TYPE_CHECKING:
    from oodida.core.metrics import Metrics
    from oodida.server.app import Server

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
    "duplicate",  # a vehicle id already connected (duplicate_vehicle = "refuse")
)
ITERATION_STATUSES = ("complete", "quorum", "partial", "failed", "cancelled")
# seconds: an iteration takes its window's time plus the fleet's answer time
ITERATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
DEPLOY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class _Metrics:
    """The process's registry and its metrics, made by the first `start`: a server
    without `[metrics]` never imports prometheus-client (40 ms and 3 MB) and counts
    nothing."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = registry = CollectorRegistry()
        self.handshakes = Counter(
            "oodida_server_handshakes", "Handshakes that admitted a peer, by role.", ["role"], registry=registry
        )
        self.refusals = Counter(
            "oodida_server_handshake_refusals",
            "Connections refused before or during the handshake, by reason.", ["reason"], registry=registry,
        )
        self.results_received = Counter(
            "oodida_server_results_received",
            "Results that arrived from vehicles (duplicates and late ones included).", registry=registry,
        )
        self.results_stored = Counter(
            "oodida_server_results_stored", "Results committed to the store for the first time (duplicates not).",
            registry=registry,
        )
        self.iterations = Counter(
            "oodida_server_iterations", "Iterations closed, by status.", ["status"], registry=registry
        )
        self.iteration_seconds = Histogram(
            "oodida_server_iteration_duration_seconds",
            "Round trip of an iteration: task sent to the fleet until its outcome is stored.",
            buckets=ITERATION_BUCKETS, registry=registry,
        )
        self.deploy_seconds = Histogram(
            "oodida_server_deploy_duration_seconds",
            "A deploy or rollback, from accepted until its quorum acknowledged it or it gave up waiting.",
            ["side", "complete"], buckets=DEPLOY_BUCKETS, registry=registry,
        )
        self.sandbox_calls = sandbox_calls_counter(registry, "off-board")
        self.loop_lag = loop_lag_histogram(registry, "server")
        # every series from the start: rate() and increase() need the zero
        for reason in REFUSAL_REASONS:
            self.refusals.labels(reason)
        for status in ITERATION_STATUSES:
            self.iterations.labels(status)
        for role in ("vehicle", "analyst", "reader"):
            self.handshakes.labels(role)
        for side in ("on_board", "off_board"):
            for complete in ("true", "false"):
                self.deploy_seconds.labels(side, complete)


_m: _Metrics | None = None


def handshake_accepted(role: str) -> None:
    if _m is not None:
        _m.handshakes.labels(role).inc()


def handshake_refused(reason: str) -> None:
    if _m is not None:
        _m.refusals.labels(reason if reason in REFUSAL_REASONS else "malformed").inc()


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
    if _m is not None:
        _m.results_received.inc()


def results_stored(count: int) -> None:
    if _m is not None:
        _m.results_stored.inc(count)


def iteration_closed(status: str, seconds: float) -> None:
    if _m is not None:
        _m.iterations.labels(status).inc()
        _m.iteration_seconds.observe(seconds)


def deploy_ended(side: str, complete: bool, seconds: float) -> None:
    if _m is not None:
        _m.deploy_seconds.labels(side, "true" if complete else "false").observe(seconds)


def sandbox_event(outcome: str) -> None:
    """The observer of the server's sandbox host (`SandboxHost.on_event`): "ok" or
    the rule a call broke."""
    if _m is not None:
        _m.sandbox_calls.labels(outcome if outcome in SANDBOX_OUTCOMES else "error").inc()


class _ServerState:
    """What the server holds now, read at scrape time (from the exporter's thread:
    only lengths and counters, nothing that iterates a dict the loop may change)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        s = self.server
        yield GaugeMetricFamily("oodida_server_vehicles_connected", "Vehicles with an open session.",
                                value=len(s.vehicles))
        yield GaugeMetricFamily("oodida_server_connections", "Open connections (vehicles, analysts, handshakes).",
                                value=s.listener.connections)
        yield GaugeMetricFamily("oodida_server_handshakes_in_progress", "Connections between accept and the end "
                                "of their handshake.", value=s.listener.handshaking)
        yield GaugeMetricFamily("oodida_server_assignments_running", "Assignments being run.", value=len(s.runners))
        yield from sandbox_worker_families(s.off_board.stats())


def start(server: Server, settings: Metrics | None) -> Exporter | None:
    """Serve /metrics for `server` if `[metrics]` is configured; MetricsError with the
    reason if its address cannot be had. None when metrics are off."""
    global _m
    if settings is None:
        return None
    if _m is None:
        _m = _Metrics()
    server.off_board.on_event = sandbox_event
    exporter = Exporter(_m.registry, settings.listen, (_ServerState(server),))
    exporter.start(_m.loop_lag.observe)
    return exporter


def stop(exporter: Exporter | None) -> None:
    if exporter is not None:
        exporter.stop()
