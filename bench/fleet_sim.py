"""Simulated vehicles for bench/fleet_scale.py: thousands of connections in one asyncio loop.

Each simulated vehicle speaks the real protocol over its own TCP connection (the
handshake, a `VehicleStatus`, then `Task` -> `Result` -> `ResultAck`) but does
only light on-board work: the built-in methods of the task on a small fixed numpy
window (50 samples per signal), no CAN decoding, no sandbox, no outbox. What is
measured is then the server and the protocol, not the agents' data path (that is
bench/iteration_roundtrip.py's and bench/ingest.py's job).

    FLEET_SIM_TOKEN=... python bench/fleet_sim.py --port PORT --first 1 --count 3000

Talks to its parent over pipes, one JSON object a line on stdout:
`{"event": "connected", ...}` once every vehicle of this process has finished its
handshake (or failed it), then one `{"event": "report", ...}` for each line `report`
on stdin; `stop` on stdin (or EOF) closes every connection and ends the process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import ssl
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: the repo's packages first

import numpy as np

from oodida.analytics import registry
from oodida.analytics.arrays import to_wire
from oodida.analytics.series import Series
from oodida.link import Channel, ChannelError, connect
from oodida.wire import RemoteProtocolError, Role
from oodida.wire.messages import (
    BUILTIN_CODE_HASH,
    CancelTask,
    Error,
    LoadModule,
    Result,
    ResultAck,
    SourceState,
    Task,
    VehicleStatus,
)

SAMPLES = 50


def raise_nofile_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit: a process holding thousands of
    connections needs a descriptor each. Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def handshake(
    host: str, port: int, identity: str, secret: str, ssl_context: ssl.SSLContext | None, timeout: float
) -> Channel:
    """Dial and authenticate as vehicle `identity`: the one place to change when the
    handshake changes (the simulated vehicle does exactly what the agent does)."""
    channel, _ = await connect(
        host, port, role=Role.VEHICLE, identity=identity, secret=secret, software="fleet-sim",
        timeout=timeout, ssl_context=ssl_context,
    )
    return channel


class Stats:
    def __init__(self) -> None:
        self.connected = 0  # handshakes that succeeded
        self.failed: Counter[str] = Counter()  # handshakes that failed, by reason
        self.lost: Counter[str] = Counter()  # connections that ended before we stopped, by reason
        self.handshake_s: list[float] = []  # dial to welcome, per vehicle
        self.tasks = 0
        self.results = 0
        self.acks = 0
        self.errors: Counter[str] = Counter()  # Error messages from the server, by reason
        self.task_to_ack_s: list[float] = []  # task received -> its result acknowledged

    def as_dict(self) -> dict[str, Any]:
        hs = np.asarray(self.handshake_s or [0.0])
        ta = np.asarray(self.task_to_ack_s or [0.0])
        return {
            "connected": self.connected,
            "failed": sum(self.failed.values()),
            "failed_reasons": dict(self.failed.most_common(5)),
            "lost": sum(self.lost.values()),
            "lost_reasons": dict(self.lost.most_common(5)),
            "tasks": self.tasks,
            "results": self.results,
            "acks": self.acks,
            "errors": dict(self.errors.most_common(5)),
            "handshake_ms": {"median": float(np.median(hs)) * 1e3, "p99": float(np.percentile(hs, 99)) * 1e3,
                             "max": float(hs.max()) * 1e3},
            "task_to_ack_ms": {"median": float(np.median(ta)) * 1e3, "p99": float(np.percentile(ta, 99)) * 1e3,
                               "n": len(self.task_to_ack_s)},
        }


class SimVehicle:
    """One vehicle's protocol loop with a fixed small window per signal."""

    def __init__(self, vehicle: str, seed: int, stats: Stats) -> None:
        self.vehicle = vehicle
        self.stats = stats
        rng = np.random.default_rng(seed)
        self._t = np.arange(SAMPLES, dtype=np.float64) * 0.01
        self._v = rng.normal(50.0, 10.0, SAMPLES)
        self._pending: dict[tuple[int, int], float] = {}  # result key -> when its task came

    def status(self) -> VehicleStatus:
        return VehicleStatus(
            frames=0, unknown_frames=0, malformed_frames=0, signal_time=None,
            sources=[SourceState(name="sim", state="running")], signals=[], pid=os.getpid(),
        )

    def answer(self, task: Task) -> Result:
        window = {name: Series(self._t, self._v) for name in task.signals}
        common: dict[str, Any] = dict(assignment=task.assignment, iteration=task.iteration, vehicle=self.vehicle,
                                      code_hash=BUILTIN_CODE_HASH)
        try:
            value = registry.run_on_board(task.methods, window, task.params, task.state)
        except Exception as exc:  # the server asked for something odd: say so, as the agent does
            return Result(**common, ok=False, error=f"{type(exc).__name__}: {exc}"[:4000])
        return Result(**common, ok=True, value=to_wire(value), samples={n: SAMPLES for n in task.signals},
                      t_start=float(self._t[0]), t_end=float(self._t[-1]))

    async def serve(self, channel: Channel) -> None:
        await channel.send(self.status())
        async for message in channel.messages(on_error=self._bad_message, reply=False):
            if isinstance(message, Task):
                self.stats.tasks += 1
                self._pending[(message.assignment, message.iteration)] = time.monotonic()
                await channel.send(self.answer(message))
                self.stats.results += 1
            elif isinstance(message, ResultAck):
                self.stats.acks += 1
                came = self._pending.pop((message.assignment, message.iteration), None)
                if came is not None:
                    self.stats.task_to_ack_s.append(time.monotonic() - came)
            elif isinstance(message, Error):
                self.stats.errors[message.reason[:120]] += 1
            elif isinstance(message, (CancelTask, LoadModule)):
                pass  # no modules and nothing long-running here


    def _bad_message(self, exc: RemoteProtocolError) -> None:
        self.stats.errors[f"bad message from the server: {exc.reason}"[:120]] += 1


async def run_vehicle(
    args: argparse.Namespace, index: int, token: str, sem: asyncio.Semaphore, stats: Stats,
    ssl_context: ssl.SSLContext | None, handshakes_done: asyncio.Event, stopping: asyncio.Event,
) -> None:
    vehicle = f"car-{index}"
    try:
        async with sem:
            started = time.monotonic()
            try:
                channel = await handshake(args.host, args.port, vehicle, token, ssl_context, args.timeout)
            except ChannelError as exc:
                stats.failed[str(exc)[:160]] += 1
                return
            stats.handshake_s.append(time.monotonic() - started)
            stats.connected += 1
    finally:
        if stats.connected + sum(stats.failed.values()) == args.count:
            handshakes_done.set()
    try:
        await SimVehicle(vehicle, index, stats).serve(channel)
    except ChannelError as exc:
        if not stopping.is_set():
            stats.lost[str(exc).replace(channel.peer, "PEER")[:160]] += 1
    finally:
        await channel.close()


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def amain(args: argparse.Namespace) -> int:
    limit = raise_nofile_limit()
    token = os.environ["FLEET_SIM_SECRET"]
    ssl_context = None
    if args.cafile:
        ssl_context = ssl.create_default_context(cafile=args.cafile)
    stats = Stats()
    sem = asyncio.Semaphore(args.concurrency)
    handshakes_done, stopping = asyncio.Event(), asyncio.Event()
    started = time.monotonic()
    jobs = [
        asyncio.create_task(run_vehicle(args, i, token, sem, stats, ssl_context, handshakes_done, stopping))
        for i in range(args.first, args.first + args.count)
    ]
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    await handshakes_done.wait()
    emit({"event": "connected", "seconds": time.monotonic() - started, "nofile": limit, "pid": os.getpid(),
          **stats.as_dict()})
    while True:
        line = (await stdin.readline()).strip()
        if line == b"report":
            emit({"event": "report", **stats.as_dict()})
        elif line in (b"stop", b""):
            break
    stopping.set()
    for job in jobs:
        job.cancel()
    await asyncio.gather(*jobs, return_exceptions=True)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--first", type=int, default=1, help="the first vehicle is car-FIRST")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=200, help="handshakes in flight at once")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for one dial and handshake")
    parser.add_argument("--cafile", help="TLS: trust this certificate (and dial with TLS)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
