"""How many frames a second the agent ingests from live CAN buses, and at what CPU cost.

Run on demand, not as a test:  .venv/bin/python bench/ingest.py [--buses 1 3] [--rates 1000 3000 ...]

The receiving side is the agent's own code: `agent.main.build_agent` from a TOML
config with N `kind = "bus"`, `interface = "virtual"` sources (kernel_filters off:
the virtual interface has none), its pumps started (one reader thread per bus,
`BusSource.batches` -> `decode_batch`/`decode` -> `SignalStore`). No server: the
uplink is not started, and ingest does not depend on it.

python-can's `virtual` interface lives inside one process, so the sender is a thread
of this process. It replays the recorded drive's can0 frames onto each bus at R
frames/s per bus, paced on the clock. It puts the frames straight into the receiving
bus's queue, as `VirtualBus.send` does but without its per-frame `deepcopy` (which
would cost the sender more than the agent spends receiving); the frame objects are
built once before the run and stamped with the time as they are sent. The CPU of the
pump threads (what the agent spends on ingest) is read from each thread's own CPU
clock, apart from the sender's and the main thread's. Threads share the GIL, so the
sender also takes wall time from the pumps: the figures are, if anything, pessimistic.
The sender wakes every --tick s (2 ms), so frames arrive in bursts of rate x tick
(18 at 9,000 frames/s): a real bus spreads them evenly, which gives the pump smaller
batches and more wake-ups, so a real bus may cost more per frame at low rates.
Columns: offered and received frames/s per bus; rx CPU, the receiving threads' CPU
over the step's wall time, in cores; us/frame, that CPU per frame received; the
sender's CPU likewise; the backlog left queued at the end of the step, how long it
had waited (backlog / rate) and how long the pumps then took to drain it.

The virtual bus's queues are unbounded, so nothing is dropped: a rate is kept up with
when the pumps received >= 98 % of what was offered in the step and the backlog left
in the queues at its end is under 0.1 s of frames. The backlog (frames, and how long
they waited) is printed per step; the queues are drained before the next step.

Baseline, in the same run: cantools `decode_message` per frame + `SignalStore.add`
of the same frames held in memory (CPU per frame), the way an agent without the batch
decoder would decode and store; the ratio is the pumps' CPU per frame at 9,000
frames/s over it. The baseline receives nothing, so a reference step follows: plain
threads calling python-can's `recv` on the same buses at 9,000 frames/s, no decode
and no store: what receiving alone costs, inside the pumps' figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# This checkout's code, not whatever copy of oodida the venv has installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import can  # after the path is set
import cantools
from cantools.database.can import Database

from oodida.agent.config import load_agent_config
from oodida.agent.main import build_agent
from oodida.agent.store import SignalStore
from oodida.core.logs import setup_logging

DATA = Path(__file__).resolve().parents[1] / "data"
LOG = DATA / "rav4-2017-comma2k19.log"
DBC = DATA / "toyota_rav4_2017.dbc"
BUS_LIMIT = 9_000  # frames/s: about the most a 1 Mbit/s classic CAN bus carries
GOAL_BUSES = 3
GOAL_CORES = 0.5
KEPT_UP = 0.98  # share of offered frames received within the step
MAX_BACKLOG_S = 0.1  # seconds' worth of frames left queued at the end of a step
TICK = 0.002  # the sender's default pacing period, s


def thread_cpu(thread: threading.Thread) -> float:
    """CPU seconds one thread has used (Linux: its own CPU clock)."""
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def write_config(path: Path, channels: list[str]) -> Path:
    sources = "".join(
        f'\n[[sources]]\nkind = "bus"\ninterface = "virtual"\nchannel = "{c}"\ndbc = "{DBC}"\nkernel_filters = false\n'
        for c in channels
    )
    secret = path.parent / "bench-ingest.secret"  # never used: this agent has no server
    secret.write_text("bench-ingest-unused\n")
    secret.chmod(0o600)
    path.write_text(
        'vehicle = "bench-ingest"\nlog_level = "error"\n\n'
        f'[server]\nhost = "127.0.0.1"\nport = 9\nsecret_file = "{secret}"\nplain = true\n'
        f'\n[outbox]\npath = "{path.stem}.outbox.sqlite3"\n' + sources  # an agent per file: one outbox each
    )
    return path


class Sender:
    """One thread feeding every bus at `rate` frames/s each, paced on the clock."""

    def __init__(self, channels: list[str], frames: list[tuple[int, bytes]], tick: float = TICK) -> None:
        self.tick = tick
        self.buses = [can.Bus(interface="virtual", channel=c, ignore_config=True) for c in channels]
        # The receiving queues: every queue on the channel but the sender's own.
        self.targets = []
        for bus in self.buses:
            others = [q for q in bus.channel if q is not bus.queue]
            if len(others) != 1:
                raise RuntimeError(f"expected one receiver on {bus.channel_id}, found {len(others)}")
            self.targets.append(others[0])
        self.messages = [
            [can.Message(arbitration_id=i, data=d, is_extended_id=i > 0x7FF, channel=c) for i, d in frames]
            for c in channels
        ]
        self.sent = 0  # per bus
        self.cpu = 0.0  # the last step's sender CPU seconds
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()

    def run_step(self, rate: float, seconds: float) -> None:
        self._stop.clear()
        self.thread = threading.Thread(target=self._run, args=(rate, seconds), name="sender", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.thread is not None:
            self.thread.join(5)

    def _run(self, rate: float, seconds: float) -> None:
        n = len(self.messages[0])
        pairs = list(zip(self.targets, self.messages, strict=True))
        started = time.monotonic()
        done = 0
        while not self._stop.is_set():
            elapsed = time.monotonic() - started
            if elapsed >= seconds:
                break
            due = int(rate * elapsed) - done
            if due > 0:
                now = time.time()
                for target, messages in pairs:
                    put = target.put
                    for k in range(done, done + due):
                        m = messages[(self.sent + k) % n]
                        m.timestamp = now
                        put(m)
                done += due
            time.sleep(self.tick)
        self.sent += done
        self.cpu = time.thread_time()  # this thread's CPU, read before it ends

    def close(self) -> None:
        self.stop()
        for bus in self.buses:
            bus.shutdown()


class RecvOnly:
    """python-can alone: a thread per bus calling `recv` and counting, nothing else.
    Looks enough like a Pump (`frames`, `state`, `_thread`, `start`, `stop`) for run_buses."""

    def __init__(self, channel: str) -> None:
        self.bus = can.Bus(interface="virtual", channel=channel, ignore_config=True)
        self.frames = 0
        self.state = "running"
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"recv-{channel}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.bus.shutdown()

    def _run(self) -> None:
        recv = self.bus.recv
        while not self._stop.is_set():
            if recv(0.1) is not None:
                self.frames += 1


def run_buses(
    buses: int, rates: list[int], seconds: float, frames: list[tuple[int, bytes]], workdir: Path,
    recv_only: bool = False, tick: float = TICK,
) -> dict[str, Any]:
    channels = [f"oodida-bench-{os.getpid()}-{'r' if recv_only else 'a'}{buses}-{b}" for b in range(buses)]
    agent: Any
    if recv_only:
        agent = argparse.Namespace(pumps=[RecvOnly(c) for c in channels])
    else:
        agent = build_agent(load_agent_config(write_config(workdir / f"agent-{buses}.toml", channels)))
    sender = Sender(channels, frames, tick)  # after the receivers: their buses must exist to be found
    rows = []
    best = 0
    try:
        for pump in agent.pumps:
            pump.start()
        time.sleep(0.2)
        pumps = [p._thread for p in agent.pumps]
        queues = sender.targets
        what = "python-can recv alone (reference: no decode, no store)" if recv_only else "the agent's pumps"
        print(f"\n== {buses} bus{'es' if buses > 1 else ''} (virtual), {seconds:g} s per step: {what}")
        print(f"  {'offered/bus':>11} {'received/bus':>12} {'rx CPU':>10} {'us/frame':>8} {'sender CPU':>10} "
              f"{'backlog':>8} {'waited':>8} {'drained in':>10}  verdict")
        for rate in rates:
            before_frames = sum(p.frames for p in agent.pumps)
            before_cpu = sum(thread_cpu(t) for t in pumps)
            sent_before = sender.sent
            t0 = time.monotonic()
            sender.run_step(rate, seconds)
            assert sender.thread is not None
            sender.thread.join()
            wall = time.monotonic() - t0
            cpu = sum(thread_cpu(t) for t in pumps) - before_cpu
            received = sum(p.frames for p in agent.pumps) - before_frames
            offered = (sender.sent - sent_before) * buses
            backlog = sum(q.qsize() for q in queues)
            # Frames queued at the end of the step waited about backlog / rate.
            waited = backlog / (rate * buses)
            t1 = time.monotonic()
            while sum(p.frames for p in agent.pumps) - before_frames < offered and time.monotonic() - t1 < 30:
                time.sleep(0.01)
            drained = time.monotonic() - t1
            failed = [p for p in agent.pumps if p.state == "failed"]
            if failed:
                raise RuntimeError(f"pump failed: {failed[0].error}")
            ok = received >= KEPT_UP * offered and waited < MAX_BACKLOG_S
            if ok:
                best = rate
            cores = cpu / wall
            rows.append({"rate": rate, "received": received / wall / buses, "cores": cores,
                         "us": cpu / max(received, 1) * 1e6, "ok": ok, "backlog": backlog})
            sender_share = sender.cpu / wall
            print(
                f"  {rate:11,d} {received / wall / buses:12,.0f} {cores:9.3f}c {cpu / max(received, 1) * 1e6:8.2f} "
                f"{sender_share:9.3f}c {backlog:8,d} {waited * 1e3:6.0f}ms {drained:9.2f}s  "
                f"{'kept up' if ok else 'FELL BEHIND'}"
            )
            if not ok:
                break
    finally:
        sender.close()
        for pump in agent.pumps:
            pump.stop()
    return {"buses": buses, "best": best, "rows": rows}


def baseline(frames: list[tuple[int, bytes]]) -> float:
    """CPU seconds per frame: cantools decode_message per frame + SignalStore.add."""
    db = cantools.database.load_file(DBC, strict=False)
    assert isinstance(db, Database)
    known = {m.frame_id for m in db.messages}
    names = sorted({s.name for m in db.messages for s in m.signals})
    decode = db.decode_message
    best = float("inf")
    for _ in range(3):
        store = SignalStore(retention=300.0, max_samples=200_000)
        store.declare(names)
        add = store.add
        started = time.thread_time()
        t = 0.0
        for frame_id, data in frames:
            t += 1e-4
            if frame_id in known:
                values = decode(frame_id, data, decode_choices=False, scaling=True)
                add(t, [(k, v) for k, v in values.items() if k in store])
        best = min(best, time.thread_time() - started)
    return best / len(frames)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buses", type=int, nargs="+", default=[1, 3], help="bus counts (default 1 3)")
    parser.add_argument(
        "--rates", type=int, nargs="+", default=[1_000, 3_000, 9_000, 18_000, 27_000, 50_000, 100_000],
        help="offered frames/s per bus, rising; stops at the first not kept up with",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per step (default 3)")
    parser.add_argument(
        "--tick", type=float, default=TICK,
        help=f"the sender's pacing period, s: frames come in bursts of rate x tick (default {TICK:g})",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    setup_logging("error")  # DBC warnings are known

    with can.LogReader(LOG) as reader:
        frames = [(m.arbitration_id, bytes(m.data)) for m in reader if m.channel == "can0"]
    print(
        f"ingest from virtual CAN buses on {platform.node()} ({os.cpu_count()} cores, "
        f"Python {platform.python_version()}, "
        f"python-can {can.__version__}); {len(frames):,} can0 frames of {LOG.name}, replayed in a loop; "
        f"the sender wakes every {args.tick * 1e3:g} ms"
    )
    base = baseline(frames)
    print(
        f"baseline (cantools decode_message + SignalStore.add, per frame, this thread's CPU): "
        f"{base * 1e6:.2f} us/frame -> {GOAL_CORES / base:,.0f} frames/s in {GOAL_CORES:g} core"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="oodida-bench-ingest-") as tmp:
        try:
            for buses in args.buses:
                results.append(run_buses(buses, args.rates, args.seconds, frames, Path(tmp), tick=args.tick))
            reference = run_buses(
                max(args.buses), [BUS_LIMIT], args.seconds, frames, Path(tmp), recv_only=True, tick=args.tick
            )
        except KeyboardInterrupt:
            print("\ninterrupted; the pumps and the sender were stopped", file=sys.stderr)
            return 130
    print("\nsummary")
    for r in results:
        capped = r["best"] == args.rates[-1]
        print(
            f"  {r['buses']} bus(es): highest rate kept up with {r['best']:,} frames/s per bus "
            f"({r['best'] * r['buses']:,} in all){' (the highest offered)' if capped else ''}"
        )
    ref = reference["rows"][0]
    print(
        f"  reference, python-can recv alone at {BUS_LIMIT:,} frames/s x {reference['buses']}: "
        f"{ref['cores']:.3f} cores, "
        f"{ref['us']:.2f} us/frame (receiving, before any decoding: in the ingest figures, not in the baseline)"
    )
    for r in results:
        at = [row for row in r["rows"] if row["rate"] == BUS_LIMIT]
        if not at:
            continue
        row = at[0]
        print(
            f"  at {BUS_LIMIT:,} frames/s x {r['buses']}: ingest {row['cores']:.3f} cores, {row['us']:.2f} us/frame; "
            f"baseline {base * 1e6:.2f} us/frame; ingest / baseline = x{row['us'] / (base * 1e6):.2f} CPU per frame"
        )
        if r["buses"] == GOAL_BUSES:
            fits = row["ok"] and row["cores"] <= GOAL_CORES
            print(
                f"goal ({GOAL_BUSES} x {BUS_LIMIT:,} frames/s in {GOAL_CORES:g} core): {'met' if fits else 'NOT met'} "
                f"({row['cores']:.3f} cores, {'kept up' if row['ok'] else 'fell behind'}); "
                f"cantools per frame would need {base * BUS_LIMIT * GOAL_BUSES:.2f} cores"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
