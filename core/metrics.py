"""What the server's and the agent's Prometheus endpoints share: the address rule,
the HTTP exporter and the event-loop lag probe.

Each process has its own `CollectorRegistry` (server/metrics.py, agent/metrics.py),
never prometheus-client's global default: nothing another library registers there
leaks into our page, and a test that imports both sides gets two separate ones.

The page is served by prometheus-client's own HTTP server, in a daemon thread: a
scrape never waits for the event loop, and a wedged loop still shows its lag
rising. Plain HTTP, as Prometheus scrapes it; the endpoint carries counts only (no
credential, no identity, no analyst's data), but it has no authentication, so an
address others can reach is allowed only when asked for (`remote = true`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from oodida.core.errors import OodidaError

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
LAG_INTERVAL = 0.25  # seconds between two looks at the event loop
# event-loop lag, in seconds: a healthy loop is below the first bucket
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricsError(OodidaError):
    """The metrics endpoint cannot listen where it was told to (address taken, not ours)."""


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:9470` for IPv6) as (host, port); ValueError saying why not."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"listen = {text!r}: write HOST:PORT, e.g. \"127.0.0.1:9470\"")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"listen = {text!r}: an IPv6 address goes in brackets, e.g. \"[::1]:9470\"")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"listen = {text!r}: an IPv6 address goes in brackets, e.g. \"[::1]:9470\"")
    number = int(port)
    if number > 65535:
        raise ValueError(f"listen = {text!r}: port {number} is over 65535")
    return host, number


def listen_problem(text: str, remote: bool) -> str | None:
    """Why `[metrics] listen` cannot be used, or None. A non-loopback address needs
    `remote = true`: the page is plain HTTP with no authentication."""
    try:
        host, _ = split_listen(text)
    except ValueError as exc:
        return str(exc)
    if not remote and not _is_loopback(host):
        return (
            f"listen = {text!r} is not a loopback address: the metrics page is plain HTTP without "
            "authentication; set remote = true to serve it to the network (behind a firewall that "
            "lets only your Prometheus in), or listen on 127.0.0.1"
        )
    return None


class Metrics(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`[metrics]` of server.toml and agent.toml: a Prometheus /metrics page, off unless
    the section is there. Plain HTTP without authentication: loopback only, unless
    `remote = true`."""

    listen: Annotated[str, Meta(max_length=300)] = "127.0.0.1:9470"
    remote: bool = False

    def __post_init__(self) -> None:
        problem = listen_problem(self.listen, self.remote)
        if problem is not None:
            raise ValueError(problem)


SANDBOX_OUTCOMES = ("ok", "timeout", "crash", "memory", "error")  # error: every other rule the module broke


def sandbox_calls_counter(registry: Any, modules: str) -> Any:
    """`oodida_sandbox_calls_total{outcome}`, the same on both sides (`modules`: whose,
    e.g. "on-board"), every outcome's series there from the start."""
    from prometheus_client import Counter

    counter = Counter("oodida_sandbox_calls", f"Calls into the sandbox ({modules} modules), by outcome.",
                      ["outcome"], registry=registry)
    for outcome in SANDBOX_OUTCOMES:
        counter.labels(outcome)
    return counter


def loop_lag_histogram(registry: Any, service: str) -> Any:
    """`oodida_<service>_event_loop_lag_seconds`, fed by the exporter's probe."""
    from prometheus_client import Histogram

    return Histogram(f"oodida_{service}_event_loop_lag_seconds",
                     "How late the event loop wakes a timer (sampled every 0.25 s).",
                     buckets=LAG_BUCKETS, registry=registry)


def sandbox_worker_families(stats: dict[str, Any] | None) -> Iterator[Any]:
    """The sandbox's worker counters, read from `SandboxHost.stats()` at scrape time:
    the same two on the server and the agent."""
    from prometheus_client.core import CounterMetricFamily

    stats = stats or {}
    yield CounterMetricFamily("oodida_sandbox_worker_starts", "Sandbox workers started (the first, and each "
                              "replacement after a timeout, crash or recycle).", value=stats.get("started", 0))
    yield CounterMetricFamily("oodida_sandbox_worker_restarts", "Sandbox workers replaced after a timeout or "
                              "a death.", value=stats.get("restarts", 0))


class Exporter:
    """One process's /metrics page, from `start` until `stop`."""

    def __init__(self, registry: Any, listen: str, collectors: tuple[Any, ...] = ()) -> None:
        self.registry = registry
        self.collectors = collectors  # registered while the page is served (state read at scrape time)
        self.host, self.port = split_listen(listen)
        self._http: Any = None
        self._thread: Any = None
        self._lag: asyncio.Task[None] | None = None

    def start(self, on_lag: Callable[[float], None] | None = None) -> None:
        """Listen (MetricsError with the reason if the address is taken or not ours),
        and, on the running event loop, measure its lag into `on_lag`."""
        from prometheus_client import disable_created_metrics, start_http_server

        # no `_created` series beside every counter and histogram: twice the series for
        # a timestamp Prometheus does not need (it sees resets itself)
        disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
        try:
            self._http, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise MetricsError(f"[metrics] cannot listen on {self.host}:{self.port}: {why}") from None
        for collector in self.collectors:
            self.registry.register(collector)
        self.port = self._http.server_port
        log.info("metrics on http://%s:%d/metrics", self.host if ":" not in self.host else f"[{self.host}]", self.port)
        if on_lag is not None:
            self._lag = asyncio.create_task(measure_lag(on_lag), name="metrics-loop-lag")

    def stop(self) -> None:
        if self._lag is not None:
            self._lag.cancel()
            self._lag = None
        if self._http is not None:
            self._http.shutdown()  # ends serve_forever within its 0.5 s poll
            self._http.server_close()
            self._http = None
            for collector in self.collectors:
                self.registry.unregister(collector)


async def measure_lag(observe: Callable[[float], None], interval: float = LAG_INTERVAL) -> None:
    """How late the loop wakes a sleeper, every `interval` s: the time a callback
    waits behind others, which is what every message of every peer waits too."""
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(interval)
        observe(max(0.0, loop.time() - before - interval))
