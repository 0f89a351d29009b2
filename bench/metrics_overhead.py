"""What the metrics cost: per event on the hot paths, and per scrape of /metrics.

Run on demand, not as a test:  .venv/bin/python bench/metrics_overhead.py [--events 1000000] [--scrapes 200]

Events: the server's per-result calls (`result_received`, `results_stored`) and the
per-iteration and per-sandbox-call ones, each called --events times with `[metrics]`
on (a real prometheus-client registry). Baseline, in the same run: the same calls
before any `start`, when each is a no-op (what a server without `[metrics]` pays);
the ratio on/off and the extra nanoseconds per call are printed.

Scrapes: a real in-process `Server` (plain TCP on loopback, SQLite in a temporary
folder) with `[metrics]` on a free port, scraped over real HTTP --scrapes times from
a thread while the event loop runs; milliseconds per scrape (median and p95) and the
page's size. Baseline: as many GETs of /favicon.ico, which the same server answers
empty (what HTTP alone costs), so the difference is rendering the page.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oodida.server import metrics  # noqa: E402
from oodida.testing import free_port  # noqa: E402

CALLS = {
    "result_received()": lambda: metrics.result_received(),
    "results_stored(1)": lambda: metrics.results_stored(1),
    "iteration_closed()": lambda: metrics.iteration_closed("complete", 1.5),
    "sandbox_event()": lambda: metrics.sandbox_event("ok"),
}


def time_calls(n: int) -> dict[str, float]:
    """Nanoseconds per call of each event function."""
    out = {}
    for name, call in CALLS.items():
        started = time.perf_counter_ns()
        for _ in range(n):
            call()
        out[name] = (time.perf_counter_ns() - started) / n
    return out


def get(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=10) as response:
        size = len(response.read())
    return (time.perf_counter() - started) * 1000, size


async def scrapes(n: int) -> dict[str, tuple[float, float, int]]:
    from oodida.server.app import Server
    from oodida.server.config import Listen, Metrics, ServerConfig

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = ServerConfig(listen=Listen(port=0, plain=True), database=str(Path(tmp) / "s.sqlite3"),
                              metrics=Metrics(listen=f"127.0.0.1:{port}"))
        server = Server(config)
        await server.start()
        try:
            out = {}
            for name, path in (("/metrics", "/metrics"), ("baseline: /favicon.ico", "/favicon.ico")):
                runs = await asyncio.to_thread(lambda p=path: [get(f"http://127.0.0.1:{port}{p}") for _ in range(n)])
                times = sorted(t for t, _ in runs)
                out[name] = (statistics.median(times), times[int(len(times) * 0.95) - 1], runs[-1][1])
            return out
        finally:
            await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()

    off = time_calls(args.events)  # before any start: no-ops
    pages = asyncio.run(scrapes(args.scrapes))  # starts the metrics
    on = time_calls(args.events)
    print(f"events, {args.events:,} calls each        off (ns)   on (ns)   extra (ns)   on/off")
    for name in CALLS:
        extra, ratio = on[name] - off[name], on[name] / off[name]
        print(f"  {name:<24} {off[name]:10.0f} {on[name]:9.0f} {extra:12.0f} {ratio:8.1f}x")
    print(f"scrapes over HTTP, {args.scrapes} each   median (ms)   p95 (ms)   bytes")
    for name, (median, p95, size) in pages.items():
        print(f"  {name:<24} {median:13.2f} {p95:10.2f} {size:7d}")
    render = pages["/metrics"][0] - pages["baseline: /favicon.ico"][0]
    print(f"  rendering the page: {render:.2f} ms per scrape (median, over the empty answer to /favicon.ico)")


if __name__ == "__main__":
    main()
