"""The dashboard beside a big fleet: page load, update latency, and what it costs the server.

Run on demand, not as a test:

    .venv/bin/python bench/dashboard.py [--vehicles 1000] [--iterations 5] [--idle 10] [--workers 2]

One real server process, 1,000 simulated vehicles (bench/fleet_sim.py: the real
protocol, light on-board work), and the bench's own analyst client. Then, in order:

1. baseline, no dashboard: the server's CPU over `--idle` seconds with nothing to do
   but its vehicles' statuses, then an assignment of `--iterations` iterations over
   every vehicle, which the analyst follows (as `oodida results --follow`);
2. the same with `oodida dashboard` running (its own process), signed in as the
   analyst: the fleet page and the assignment page loaded over HTTP (time to the last
   byte of the whole page, 1,000 vehicle rows), their event streams open as a browser
   keeps them (the fleet stream polls status each second); the same idle window and
   the same assignment.

Printed: page load times; the update latency of each iteration (the server's
`closed` stamp to the event that carries that iteration's row reaching the bench,
one clock); the server's CPU (utime+stime from /proc) per second idle and per
iteration, with and without the dashboard, and the ratio. The machine's load average
is printed too: other processes on the same cores move every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from fleet_scale import METHODS, SAMPLES_WINDOW, SIGNALS, ServerProcess, SimWorkers, cpu_seconds, loadavg  # noqa: E402

from oodida.wire.messages import AssignmentSpec, IterationReport, WindowSpec  # noqa: E402


class Browserish:
    """What a browser does with the dashboard, over plain HTTP: sign in (cookie and
    CSRF token), load pages, keep event streams open and note when each arrives."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.seen: dict[int, float] = {}  # iteration -> when its row first arrived in an event
        self.events = 0
        self._threads: list[threading.Thread] = []
        self._responses: list[Any] = []

    def sign_in(self, identity: str, secret: str) -> None:
        page = self.opener.open(f"{self.base}/signin", timeout=30).read().decode()
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token, page[:500]
        form = urllib.parse.urlencode(
            {"csrf": token.group(1), "identity": identity, "role": "analyst", "secret": secret}
        )
        reply = self.opener.open(f"{self.base}/signin", form.encode(), timeout=60)
        assert reply.url.endswith("/fleet"), (reply.url, reply.read()[:500])

    def load(self, path: str) -> tuple[float, int]:
        t0 = time.perf_counter()
        body = self.opener.open(f"{self.base}{path}", timeout=120).read()
        return time.perf_counter() - t0, len(body)

    def stream(self, path: str) -> None:
        response = self.opener.open(f"{self.base}{path}", timeout=300)
        self._responses.append(response)

        def read() -> None:
            try:
                for raw in response:
                    line = raw.decode()
                    if line.startswith("data: {"):
                        now = time.time()
                        self.events += 1
                        for n in re.findall(r'id=\\"iteration-(\d+)\\"', line):
                            self.seen.setdefault(int(n), now)
            except (OSError, ValueError, AttributeError):  # AttributeError: http.client, closed under us
                pass

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self) -> None:
        for r in self._responses:
            try:
                r.close()
            except OSError:
                pass


async def idle_cpu(pid: int, seconds: float) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


async def run_assignment(client: Any, pid: int, vehicles: int, iterations: int, name: str,
                         submitted_hook: Any = None) -> dict[str, Any]:
    spec = AssignmentSpec(name=name, signals=SIGNALS, window=WindowSpec(amount=SAMPLES_WINDOW, unit="samples"),
                          vehicles=vehicles, iterations=iterations, on_board=METHODS, deadline=120.0)
    c0 = cpu_seconds(pid)
    submitted = await client.submit(spec)
    if submitted_hook is not None:
        submitted_hook(submitted.assignment)
    closed: dict[int, float] = {}
    arrived: dict[int, float] = {}
    async for item in client.results(submitted.assignment, follow=True):
        if isinstance(item, IterationReport):
            closed[item.iteration] = item.closed
            arrived[item.iteration] = time.time()
    return {"assignment": submitted.assignment, "cpu": cpu_seconds(pid) - c0, "closed": closed, "arrived": arrived}


def start_dashboard(server: ServerProcess, workdir: Path) -> tuple[subprocess.Popen[str], str]:
    log = open(workdir / "dashboard.log", "w")  # noqa: SIM115 (the child keeps it)
    proc = subprocess.Popen(
        [sys.executable, "-m", "oodida", "dashboard", "--listen", "127.0.0.1:0", "--server", f"127.0.0.1:{server.port}",
         "--plain", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True,
    )
    log.close()
    assert proc.stdout is not None
    with proc.stdout:
        line = proc.stdout.readline()
    found = re.search(r"(http://\S+?)/? ", line)
    if not found:
        proc.kill()
        raise SystemExit(f"the dashboard did not start: {line!r}; see {workdir / 'dashboard.log'}")
    return proc, found.group(1)


async def main_async(args: argparse.Namespace, workdir: Path) -> int:
    server = ServerProcess(workdir, HERE.parent, vehicles=args.vehicles, log_level="warning")
    workers = SimWorkers(server, args.vehicles, min(args.workers, args.vehicles), 200)
    server.start()
    dash: subprocess.Popen[str] | None = None
    browser: Browserish | None = None
    client = None
    try:
        assert server.proc is not None
        pid = server.proc.pid
        client = await server.client()
        await workers.start()
        await workers.wait_connected(timeout=300)
        await asyncio.sleep(1.0)  # the last statuses land
        connected = len((await client.status()).vehicles)
        print(f"vehicles connected: {connected} of {args.vehicles}; load average {loadavg()}")

        base_idle = await idle_cpu(pid, args.idle)
        base = await run_assignment(client, pid, connected, args.iterations, "baseline")

        dash, url = start_dashboard(server, workdir)
        browser = Browserish(url)
        t0 = time.perf_counter()
        await asyncio.to_thread(browser.sign_in, "bench", server.analyst_secret)
        signin = time.perf_counter() - t0
        fleet_load, fleet_bytes = await asyncio.to_thread(browser.load, "/fleet")
        fleet_again, _ = await asyncio.to_thread(browser.load, "/fleet")
        assignments_load, _ = await asyncio.to_thread(browser.load, "/assignments")
        base_page, base_bytes = await asyncio.to_thread(browser.load, f"/assignments/{base['assignment']}")
        browser.stream("/events/fleet")
        await asyncio.sleep(2.0)  # the stream's first status reads are in
        dash_idle = await idle_cpu(pid, args.idle)
        # the analyst opens the assignment's event stream (as its page does) as soon as
        # it is submitted; iterations that close before it is open still arrive, with
        # the history, and their latency says so
        with_dash = await run_assignment(client, pid, connected, args.iterations, "with the dashboard",
                                         lambda n: browser.stream(f"/events/assignments/{n}"))
        next_number = with_dash["assignment"]
        await asyncio.sleep(2.0)
        page_after, page_bytes = await asyncio.to_thread(browser.load, f"/assignments/{next_number}")

        latencies = {n: browser.seen[n] - t for n, t in with_dash["closed"].items() if n in browser.seen}
        missing = sorted(set(with_dash["closed"]) - set(browser.seen))
        print(f"\nsign-in (handshake as the user, to the fleet page's redirect): {signin * 1000:.0f} ms")
        print(f"page load, whole HTML over HTTP: fleet {fleet_load * 1000:.0f} ms ({fleet_bytes / 1024:.0f} KiB, "
              f"{connected} rows; again {fleet_again * 1000:.0f} ms), assignments {assignments_load * 1000:.0f} ms, "
              f"assignment page {base_page * 1000:.0f} ms ({base_bytes / 1024:.0f} KiB) and "
              f"{page_after * 1000:.0f} ms ({page_bytes / 1024:.0f} KiB) with {args.iterations} iterations")
        if latencies:
            ordered = [latencies[n] * 1000 for n in sorted(latencies)]
            print(f"update latency, iteration closed -> its event at the browser: "
                  f"median {sorted(ordered)[len(ordered) // 2]:.0f} ms, max {max(ordered):.0f} ms "
                  f"(each: {', '.join(f'{x:.0f}' for x in ordered)} ms)")
        direct = [(with_dash["arrived"][n] - t) * 1000 for n, t in sorted(with_dash["closed"].items())]
        print(f"baseline, the same iterations at the bench's own analyst client (the protocol, no dashboard): "
              f"median {sorted(direct)[len(direct) // 2]:.0f} ms, max {max(direct):.0f} ms "
              f"(each: {', '.join(f'{x:.0f}' for x in direct)} ms)")
        if missing:
            print(f"iterations whose row never came as its own event (coalesced with a later one): {missing}")
        print(f"events received: {browser.events}")
        print(f"\nserver CPU, idle with {connected} vehicles: {base_idle * 100:.1f}% of a core without the dashboard, "
              f"{dash_idle * 100:.1f}% with a signed-in fleet page open "
              f"(+{(dash_idle - base_idle) * 100:.1f} points of a core)")
        b, d = base["cpu"] / args.iterations, with_dash["cpu"] / args.iterations
        print(f"server CPU per iteration of {connected} vehicles: {b * 1000:.0f} ms without, "
              f"{d * 1000:.0f} ms with the dashboard watching ({d / b if b else float('nan'):.2f}x)")
        print(f"load average at the end {loadavg()}")
        return 0
    finally:
        if browser is not None:
            browser.close()
        if dash is not None:
            dash.terminate()
            try:
                dash.wait(10)
            except subprocess.TimeoutExpired:
                dash.kill()
        if client is not None:
            await client.close()
        await workers.stop()
        server.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of each idle CPU window (default 10)")
    parser.add_argument("--workers", type=int, default=2, help="simulator processes (default 2)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        return asyncio.run(main_async(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
