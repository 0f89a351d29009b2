"""What the sandbox costs: a warm worker's round trip, a 10^6-sample window, replacing
a killed worker; each against baselines measured in the same run.

Run on demand, not as a test:

    .venv/bin/python bench/sandbox_calls.py [--calls 2000] [--window-calls 30] [--spawns 20] [--kills 10] [--json]

Figures (wall clock, time.perf_counter, medians and 99th percentiles):

1. Small call: `on_board` returning `params['x'] + len(window)` over a 10-sample
   window, through a warm, long-lived, fully confined worker (`Supervisor.call`:
   arena write, CBOR request, pipe, RestrictedPython call, result check, CBOR reply).
2. Window of 10^6 float64 samples (t and v: 16 MB) whose mean the module returns:
   through the shared-memory arena with private copies (the default), with views
   (copy_windows=False), and inline through the pipe as CBOR typed arrays (the path
   for a window larger than the arena).
3. Replacing a killed worker: from the moment a call's budget ends (SIGKILL) to the
   next call's answer on the fresh worker (the replacement starts in the background
   at the kill, then the module is re-loaded into it); and a worker killed from
   outside between calls, to the next call's answer.
4. A worker per assignment (sandbox/host.py), forked from the owner's warm zygote:
   a new assignment's worker (fork, its layers applied, module loaded, first call
   answered; and through SandboxHost, whose spare worker, forked after the last
   request, takes the fork off the path) against a fresh exec'd zygote and its first
   worker (what an exec'd
   worker costs: interpreter, imports, warm-up); memory, as PSS from
   /proc/PID/smaps_rollup, added per extra worker (the slope of zygote + workers
   from 1 to N workers) against a whole exec'd zygote; and N assignments each with
   its module, N calls of about 20 ms of CPU each, concurrently against one after
   the other.

Baselines, same run, same module source:

- floor (small call only): a 100-byte round trip over two pipes to an exec'd
  process that echoes it back: what any separate worker pays on this host before
  doing any work (two scheduler wake-ups);
- in-process: policy.load_module once, then policy.call_entry + check_result per
  call in this process (the same restricted code, no process boundary, the window's
  arrays handed over as they are; a second row adds the private copies the worker
  makes by default);
- fresh process per call: `python -I -S -c` that imports numpy and the policy,
  compiles the module, reads the window's bytes from stdin, calls it and prints the
  result (the same work as the worker, without its confinement); and a fresh,
  confined worker per call (Supervisor start, load, call, close).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oodida.sandbox import policy
from oodida.sandbox.host import SandboxHost
from oodida.sandbox.results import check_result
from oodida.sandbox.supervisor import SandboxLimits, Supervisor

SMALL = "def on_board(window, params, state):\n    return params['x'] + len(window['s'])\n"
MEAN = "import numpy as np\n\ndef on_board(window, params, state):\n    return float(np.mean(window['s'].v))\n"
SPIN = "def on_board(window, params, state):\n    while True:\n        pass\n"
BUSY = ("def on_board(window, params, state):\n    n = 0\n    for i in range(params['loops']):\n        n += i\n"
        "    return n\n")

FRESH = r'''
import sys, json
cfg = json.loads(sys.argv[1]); sys.path[:0] = cfg["path"]
import numpy as np
from oodida.sandbox import policy
from oodida.sandbox.results import check_result
data = sys.stdin.buffer.read()
n = cfg["n"]
arr = np.frombuffer(data, dtype=np.float64)
window = {"s": policy.make_signal(arr[:n].copy(), arr[n:].copy())}
ns = policy.load_module(cfg["source"], "m.py")
value, flags = check_result(policy.call_entry(ns, "on_board", window, cfg["params"], None))
print(json.dumps(value))
'''


ECHO = "import os, sys\nr, w = int(sys.argv[1]), int(sys.argv[2])\nwhile True:\n    d = os.read(r, 4096)\n" \
       "    if not d:\n        break\n    os.write(w, d)\n"


def pipe_floor(n: int) -> list[float]:
    """A 100-byte round trip over two pipes to an exec'd process that echoes it: the
    floor any worker process pays here (scheduler wake-ups), before any Python work."""
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", ECHO, str(r1), str(w2)], pass_fds=(r1, w2))
    os.close(r1)
    os.close(w2)
    out = []
    try:
        for _ in range(n):
            started = time.perf_counter()
            os.write(w1, b"x" * 100)
            os.read(r2, 4096)
            out.append(time.perf_counter() - started)
    finally:
        os.close(w1)
        proc.wait()
        os.close(r2)
    return out


async def asyncio_floor(n: int) -> list[float]:
    """The same echo round trip, the reply awaited through the event loop (add_reader
    and a future), as the supervisor awaits its worker's: what asyncio itself adds."""
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    # a bare echo process, not asyncio's: the pipes to it are what this floor measures
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-I", "-S", "-c", ECHO, str(r1), str(w2)], pass_fds=(r1, w2)
    )
    os.close(r1)
    os.close(w2)
    os.set_blocking(r2, False)
    loop = asyncio.get_running_loop()
    out = []
    try:
        for _ in range(n):
            got: asyncio.Future[bytes] = loop.create_future()
            loop.add_reader(r2, lambda f=got: f.done() or f.set_result(os.read(r2, 4096)))
            started = time.perf_counter()
            os.write(w1, b"x" * 100)
            await got
            out.append(time.perf_counter() - started)
            loop.remove_reader(r2)
    finally:
        os.close(w1)
        proc.wait()
        os.close(r2)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))]


def fmt(seconds: float) -> str:
    if abs(seconds) < 1e-3:
        return f"{seconds * 1e6:8.1f} µs"
    if abs(seconds) < 1:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds:8.3f} s "


class Table:
    def add(self, name: str, samples: list[float]) -> float:
        med = statistics.median(samples)
        print(f"  {name:<60} median {fmt(med)}  p99 {fmt(pct(samples, 99))}  (n={len(samples)})", flush=True)
        return med


def window_of(n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1)
    return {"s": (np.arange(n) * 0.01, rng.normal(50, 10, n))}


def in_process(
    source: str, window: dict[str, tuple[np.ndarray, np.ndarray]], params: dict, n: int, copy: bool = False
) -> list[float]:
    namespace = policy.load_module(source, "m.py")
    out = []
    for _ in range(n):
        started = time.perf_counter()
        signals = {k: policy.make_signal(t.copy() if copy else t.view(), v.copy() if copy else v.view())
                   for k, (t, v) in window.items()}
        check_result(policy.call_entry(namespace, "on_board", signals, params, None))
        out.append(time.perf_counter() - started)
    return out


def fresh_process(source: str, window: dict[str, tuple[np.ndarray, np.ndarray]], params: dict, n: int) -> list[float]:
    (t, v), = window.values()
    data = np.concatenate([t, v]).astype(np.float64).tobytes()
    path = [str(ROOT)] + [p for p in sys.path if p and os.path.isabs(p) and os.path.isdir(p)]
    cfg = json.dumps({"path": path, "n": len(t), "source": source, "params": params})
    env = {"OPENBLAS_NUM_THREADS": "1"}
    out = []
    for _ in range(n):
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", FRESH, cfg], input=data, capture_output=True,
                              env=env, check=True)
        out.append(time.perf_counter() - started)
        json.loads(proc.stdout)
    return out


async def timed(n: int, fn: Callable[[], Awaitable[Any]]) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - started)
    return out


async def fresh_worker(source: str, window: dict, params: dict, n: int, limits: SandboxLimits) -> list[float]:
    async def once() -> None:
        async with Supervisor(limits) as s:
            outcome = await s.call(await s.load(source, "m.py"), "on_board", window=window, params=params)
            assert outcome.ok, outcome

    return await timed(n, once)


async def main(args: argparse.Namespace) -> None:
    print(f"# sandbox calls: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}, uid {os.geteuid()}")
    limits = SandboxLimits(call_timeout=60)
    summary: dict[str, float] = {}
    table = Table()

    # --- 1. small call ---------------------------------------------------------------------
    print("\n1. small call (10-sample window, params, a number back)")
    small = window_of(10)
    params = {"x": 1}
    async with Supervisor(limits) as s:
        applied = [layer.name for layer in s.layers if layer.applied]
        print(f"  worker {s.pid}: {len(applied)} of {len(s.layers)} layers applied ({', '.join(applied)})")
        digest = await s.load(SMALL, "small.py")
        for _ in range(100):  # warm
            await s.call(digest, "on_board", window=small, params=params)
        pid = s.pid

        async def call_small() -> None:
            outcome = await s.call(digest, "on_board", window=small, params=params)
            assert outcome.ok and outcome.value == 11, outcome

        sandboxed = table.add("warm worker (Supervisor.call)", await timed(args.calls, call_small))
        assert s.pid == pid and s.restarts == 0
    base_in = table.add("baseline: in-process (policy.call_entry + check_result)",
                        in_process(SMALL, small, params, args.calls))
    floor = table.add("floor: raw pipe round trip to an exec'd echo process", pipe_floor(args.calls))
    aio_floor = table.add("  the same, the reply awaited through asyncio", await asyncio_floor(args.calls))
    base_fresh = table.add("baseline: fresh `python -c` per call", fresh_process(SMALL, small, params, args.spawns))
    base_worker = table.add("baseline: fresh confined worker per call",
                            await fresh_worker(SMALL, small, params, args.spawns, limits))
    print(f"  ratios: warm/in-process {sandboxed / base_in:7.1f}x   warm/pipe floor {sandboxed / floor:5.1f}x   "
          f"warm/asyncio floor {sandboxed / aio_floor:5.1f}x   "
          f"fresh python/warm {base_fresh / sandboxed:7.1f}x   fresh worker/warm {base_worker / sandboxed:7.1f}x")
    summary.update(small_warm=sandboxed, small_in_process=base_in, small_pipe_floor=floor,
                   small_asyncio_floor=aio_floor, small_fresh_python=base_fresh, small_fresh_worker=base_worker)

    # --- 2. a window of 10^6 samples --------------------------------------------------------
    n = args.window
    print(f"\n2. window of {n:,} float64 samples (t and v: {2 * n * 8 / 1e6:.0f} MB), module returns the mean")
    big = window_of(n)
    expected = float(np.mean(big["s"][1]))
    results: dict[str, float] = {}
    variants = [
        ("arena, private copies (default)", SandboxLimits(call_timeout=60, arena_mb=64)),
        ("arena, read-only views (copy_windows=False)", SandboxLimits(call_timeout=60, arena_mb=64,
                                                                       copy_windows=False)),
        ("inline through the pipe (CBOR typed arrays)", SandboxLimits(call_timeout=60, arena_mb=1,
                                                                       max_message_bytes=64 * 2**20,
                                                                       max_result_bytes=32 * 2**20)),
    ]
    for name, lim in variants:
        async with Supervisor(lim) as s:
            digest = await s.load(MEAN, "mean.py")
            pid = s.pid

            async def call_big(s: Supervisor = s, digest: str = digest) -> None:
                outcome = await s.call(digest, "on_board", window=big)
                assert outcome.ok and abs(outcome.value - expected) < 1e-9, outcome

            await call_big()
            results[name] = table.add(name, await timed(args.window_calls, call_big))
            assert s.pid == pid, "the worker was replaced during the window benchmark"
    base_in_big = table.add("baseline: in-process (the arrays as they are)", in_process(MEAN, big, {},
                                                                                        args.window_calls))
    copies_in = table.add("  in-process with private copies (what copy_windows adds)",
                          in_process(MEAN, big, {}, args.window_calls, copy=True))
    base_fresh_big = table.add("baseline: fresh `python -c` per call (window on stdin)",
                               fresh_process(MEAN, big, {}, max(3, args.spawns // 4)))
    base_worker_big = table.add("baseline: fresh confined worker per call",
                                await fresh_worker(MEAN, big, {}, max(3, args.spawns // 4), limits))
    arena, views, inline = (results[v[0]] for v in variants)
    print(f"  overhead over in-process: arena+copies {fmt(arena - base_in_big)}, "
          f"arena+views {fmt(views - base_in_big)}, "
          f"inline {fmt(inline - base_in_big)}")
    print(f"  ratios: arena+copies/in-process {arena / base_in_big:5.1f}x   arena+views/in-process "
          f"{views / base_in_big:5.1f}x   inline/arena {inline / arena:5.1f}x   fresh python/arena "
          f"{base_fresh_big / arena:5.1f}x   fresh worker/arena {base_worker_big / arena:5.1f}x")
    summary.update(window_arena=arena, window_views=views, window_inline=inline, window_in_process=base_in_big,
                   window_in_process_copies=copies_in, window_fresh_python=base_fresh_big,
                   window_fresh_worker=base_worker_big)

    # --- 3. replacing a killed worker --------------------------------------------------------
    print("\n3. replacing a killed worker (the module re-loaded, then a small call answered)")
    after_timeout, after_kill = [], []
    async with Supervisor(SandboxLimits(call_timeout=0.25)) as s:
        spin = await s.load(SPIN, "spin.py")
        digest = await s.load(SMALL, "small.py")
        for _ in range(args.kills):
            outcome = await s.call(spin, "on_board", window=small)
            assert outcome.rule is not None and outcome.rule.value == "timeout", outcome
            killed_at = time.perf_counter()  # the SIGKILL went out just before the outcome came back
            outcome = await s.call(digest, "on_board", window=small, params=params)
            after_timeout.append(time.perf_counter() - killed_at)
            assert outcome.ok, outcome
        for _ in range(args.kills):
            old = s.pid
            os.kill(old, 9)
            killed_at = time.perf_counter()
            # the kernel's view of the killed worker (a zombie yet?): polled, there is no event for it
            stat = Path(f"/proc/{old}/stat")
            while stat.exists() and stat.read_text().split()[2] != "Z":  # noqa: ASYNC110, ASYNC240
                await asyncio.sleep(0.0005)
            outcome = await s.call(digest, "on_board", window=small, params=params)
            after_kill.append(time.perf_counter() - killed_at)
            assert outcome.ok and s.pid != old, outcome
        restarts = s.restarts
    replace = table.add("timeout (SIGKILL) -> next call answered by a fresh worker", after_timeout)
    replace_ext = table.add("kill -9 from outside -> next call answered by a fresh worker", after_kill)
    print(f"  ({restarts} workers replaced)")
    print(f"  ratios: replacement/fresh python call {replace / base_fresh:5.2f}x   replacement/fresh worker call "
          f"{replace / base_worker:5.2f}x   replacement/warm call {replace / sandboxed:7.0f}x   "
          f"replacement/in-process {replace / base_in:7.0f}x")
    summary.update(replace_after_timeout=replace, replace_after_kill=replace_ext)
    summary.update(replace_after_timeout_p99=pct(after_timeout, 99), replace_after_kill_p99=pct(after_kill, 99))

    await per_assignment(args, table, summary, limits, small, params, base_worker)
    print(f"\nissue 11 targets: new worker p99 {fmt(summary['new_worker_p99'])} without a spare, "
          f"{fmt(summary['new_assignment_p99'])} with (<= 20 ms), replacement p99 "
          f"{fmt(max(summary['replace_after_timeout_p99'], summary['replace_after_kill_p99']))} (<= 20 ms), "
          f"PSS per extra worker {summary['pss_per_worker_mb']:.1f} MB (<= 10 MB), warm call / pipe floor "
          f"{summary['small_warm'] / summary['small_pipe_floor']:.1f}x (<= 2x), {args.assignments} concurrent / serial "
          f"{summary['concurrent'] / summary['serial']:.2f}")
    if args.json:
        print(json.dumps(summary))


def pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")


async def per_assignment(args: argparse.Namespace, table: Table, summary: dict[str, float], limits: SandboxLimits,
                         small: dict, params: dict, base_worker: float) -> None:
    n = args.assignments
    print(f"\n4. a worker per assignment, forked from one zygote ({n} assignments for memory and concurrency)")
    host = SandboxHost(SandboxLimits(call_timeout=60, max_workers=max(n, 2) + 1))
    try:
        await host.zygote.start()
        await host.run(SMALL, "small.py", "on_board", assignment=0, window=small, params=params)  # warm
        await host.release(0)
        cold = []  # no spare: the fork, the worker's layers, its module loaded, the first call
        for _ in range(args.spawns * 5):
            s = Supervisor(limits, zygote=host.zygote)
            started = time.perf_counter()
            await s.start()
            outcome = await s.call(await s.load(SMALL, "small.py"), "on_board", window=small, params=params)
            cold.append(time.perf_counter() - started)
            assert outcome.ok and outcome.value == 11, outcome
            await s.close()
        fork = table.add("new worker, no spare: fork, layers, load, first call answered", cold)
        new_worker = []  # what a new assignment costs the host: the spare taken, its module loaded, first call
        for i in range(1, args.spawns * 5 + 1):
            await asyncio.sleep(0.05)  # assignments arrive apart: the spare forked after the last one is ready
            started = time.perf_counter()
            outcome = await host.run(SMALL, "small.py", "on_board", assignment=i, window=small, params=params)
            new_worker.append(time.perf_counter() - started)
            assert outcome.ok and outcome.value == 11, outcome
            await host.release(i)
        spare = table.add("new assignment on a host (SandboxHost.run; its spare ready)", new_worker)
        exec_first = await fresh_worker(SMALL, small, params, max(3, args.spawns // 2), limits)
        exec_med = table.add("baseline: fresh exec'd zygote + its first worker, first call", exec_first)
        print(f"  ratios: exec'd/forked {exec_med / fork:6.1f}x (p99 {pct(exec_first, 99) / pct(cold, 99):.1f}x)   "
              f"exec'd/host with spare {exec_med / spare:6.1f}x (p99 {pct(exec_first, 99) / pct(new_worker, 99):.1f}x)")
        summary.update(new_worker=fork, new_worker_p99=pct(cold, 99), new_assignment=spare,
                       new_assignment_p99=pct(new_worker, 99), exec_worker=exec_med)

        # memory: zygote + workers, each with its module loaded and called once
        zygote = host.zygote.pid
        assert zygote is not None
        totals = {}
        for i in range(1, n + 1):
            await host.run(MEAN, "mean.py", "on_board", assignment=1000 + i, window=small)
            if i in (1, n):
                await asyncio.sleep(0.05)
                pids = [zygote] + [host.supervisor(1000 + k).pid for k in range(1, i + 1)]
                totals[i] = sum(pss_kb(p) for p in pids if p is not None)
        zygote_pss = pss_kb(zygote)
        per_worker = (totals[n] - totals[1]) / max(1, n - 1) / 1024
        print(f"  PSS: zygote + 1 worker {totals[1] / 1024:.1f} MB, zygote + {n} workers {totals[n] / 1024:.1f} MB: "
              f"{per_worker:.2f} MB per extra worker (the zygote alone, sharing with them: {zygote_pss / 1024:.1f} MB)")
        async with Supervisor(limits) as lone:  # a whole exec'd process of the same kind
            await lone.start()
            exec_pss = pss_kb(lone.zygote.pid) + pss_kb(lone.pid)  # type: ignore[arg-type]
        print(f"  baseline: an exec'd zygote and its one worker, alone: {exec_pss / 1024:.1f} MB PSS; "
              f"ratio exec'd/extra worker {exec_pss / 1024 / max(per_worker, 1e-9):.1f}x")
        summary.update(pss_per_worker_mb=per_worker, pss_exec_mb=exec_pss / 1024)
        for i in range(1, n + 1):
            await host.release(1000 + i)

        # concurrency: n assignments, each its own module (source differs) and worker
        busy = {i: BUSY + f"# assignment {i}\n" for i in range(1, n + 1)}
        loops = {"loops": args.loops}
        for i in busy:
            await host.run(busy[i], f"busy{i}.py", "on_board", assignment=2000 + i, window=small, params=loops)

        async def one(i: int) -> None:
            outcome = await host.run(busy[i], f"busy{i}.py", "on_board", assignment=2000 + i, window=small,
                                     params=loops)
            assert outcome.ok, outcome

        serial, concurrent = [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            for i in busy:
                await one(i)
            serial.append(time.perf_counter() - started)
            started = time.perf_counter()
            await asyncio.gather(*(one(i) for i in busy))
            concurrent.append(time.perf_counter() - started)
        ser = table.add(f"{n} calls of {n} assignments, one after the other", serial)
        con = table.add(f"{n} calls of {n} assignments, concurrently (asyncio.gather)", concurrent)
        print(f"  ratio: concurrent/serial {con / ser:.2f} on {os.cpu_count()} cores "
              f"(1/{os.cpu_count()} = {1 / (os.cpu_count() or 1):.2f} is the best this host allows)")
        summary.update(serial=ser, concurrent=con)
    finally:
        await host.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="small calls (and in-process baseline calls)")
    parser.add_argument("--window", type=int, default=10**6, help="samples in the large window")
    parser.add_argument("--window-calls", type=int, default=30)
    parser.add_argument("--spawns", type=int, default=20, help="fresh processes / workers per baseline")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--assignments", type=int, default=8, help="assignments on one host (section 4)")
    parser.add_argument("--loops", type=int, default=300_000, help="loop steps of each concurrent call (~20 ms)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of serial and concurrent calls")
    parser.add_argument("--json", action="store_true", help="also print the medians as one JSON line")
    asyncio.run(main(parser.parse_args()))
