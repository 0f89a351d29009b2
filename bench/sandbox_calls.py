"""What the sandbox costs: a warm call, a big window, replacing a killed worker.

Run on demand:  .venv/bin/python bench/sandbox_calls.py [--calls 2000]

Each figure comes with its baselines, measured in the same run: the same function
called in this process (no sandbox at all), and a fresh process per call (what a
sandbox without a long-lived worker would pay).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time

import numpy as np

from sandbox.supervisor import SandboxLimits, Supervisor

SMALL = "def on_board(window, params, state):\n    return {'n': len(window['x'].v)}\n"
MEAN = "import numpy as np\n\ndef on_board(window, params, state):\n    return float(np.mean(window['x'].v))\n"


def stats(samples: list[float]) -> str:
    s = sorted(samples)
    p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
    return f"median {statistics.median(s) * 1e3:8.3f} ms  p99 {p99 * 1e3:8.3f} ms  (n {len(s)})"


def in_process(fn, args, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn(*args)
        out.append(time.perf_counter() - t)
    return out


def fresh_process(code: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
        out.append(time.perf_counter() - t)
    return out


async def main(calls: int) -> None:
    s = Supervisor(SandboxLimits(call_timeout=30))
    await s.start()
    small = await s.load(SMALL, "small.py")
    mean = await s.load(MEAN, "mean.py")
    tiny = {"x": (np.arange(10.0), np.arange(10.0))}
    big_t = np.arange(1_000_000, dtype=np.float64)
    big = {"x": (big_t, np.sin(big_t))}

    warm = []
    for _ in range(calls):
        t = time.perf_counter()
        await s.call(small, "on_board", window=tiny)
        warm.append(time.perf_counter() - t)
    base = in_process(lambda w: {"n": len(w["x"][1])}, (tiny,), calls)
    spawn = fresh_process("import numpy as np; print(len(np.arange(10.0)))", 20)
    print(f"small call, warm worker      {stats(warm)}")
    print(f"  baseline in-process        {stats(base)}   ratio {statistics.median(warm) / statistics.median(base):,.0f}x")
    print(f"  baseline process per call  {stats(spawn)}   ratio {statistics.median(spawn) / statistics.median(warm):,.0f}x slower than the warm worker")

    window = []
    for _ in range(30):
        t = time.perf_counter()
        outcome = await s.call(mean, "on_board", window=big)
        window.append(time.perf_counter() - t)
    assert outcome.ok and abs(outcome.value - float(np.mean(big["x"][1]))) < 1e-12
    base = in_process(lambda w: float(np.mean(w["x"][1])), (big,), 30)
    print(f"10^6 float64 window (mean)   {stats(window)}   (t and v, 16 MB, through the shared-memory arena)")
    print(f"  baseline in-process        {stats(base)}   overhead {(statistics.median(window) - statistics.median(base)) * 1e3:.1f} ms")

    replace = []
    for _ in range(10):
        os.kill(s.pid, signal.SIGKILL)
        s.proc.wait()  # dead before the next call, as a worker the kernel killed would be
        t = time.perf_counter()
        outcome = await s.call(small, "on_board", window=tiny)  # spawns, confines, re-loads, calls
        replace.append(time.perf_counter() - t)
        assert outcome.ok
    print(f"replace a killed worker      {stats(replace)}   (spawn + imports + all layers + re-load + call)")
    print(f"  baseline process per call  {stats(spawn)}")
    print(f"layers: {', '.join(l.name for l in s.layers if l.applied)}; not applied: "
          f"{', '.join(l.name for l in s.layers if not l.applied) or 'none'}")
    await s.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    asyncio.run(main(parser.parse_args().calls))
