"""The supervisor's promises: a long-lived worker, a budget per call, and a fresh
worker (with every module re-loaded) after any breach or death."""

from __future__ import annotations

import asyncio
import os
import signal

import numpy as np
import pytest

from oodida.sandbox.errors import Rule
from oodida.sandbox.supervisor import SandboxLimits, Supervisor
from tests.sandbox.workers import worker_busy

MEAN = "import numpy as np\n\ndef on_board(window, params, state):\n    return float(np.mean(window['x'].v))\n"
SLOW = "def on_board(window, params, state):\n    while True:\n        pass\n"
OFF = (
    "def off_board(results, params, state):\n"
    "    total = sum(r['n'] for r in results.values())\n"
    "    return {'total': total, 'previous': state}\n"
)
WINDOW = {"x": (np.arange(10.0), np.arange(10.0))}


async def test_one_worker_serves_many_calls():
    s = Supervisor()
    await s.start()
    try:
        digest = await s.load(MEAN, "mean.py")
        pid = s.pid
        for _ in range(50):
            outcome = await s.call(digest, "on_board", window=WINDOW)
            assert outcome.ok and outcome.value == 4.5
        before, after, restarts = pid, s.pid, s.restarts
    finally:
        await s.close()
    assert before == after and restarts == 0


async def test_a_timeout_kills_the_worker_and_the_next_call_gets_a_fresh_one_with_its_modules():
    s = Supervisor(SandboxLimits(call_timeout=0.5))
    await s.start()
    try:
        mean = await s.load(MEAN, "mean.py")
        slow = await s.load(SLOW, "slow.py")
        first = s.pid
        outcome = await s.call(slow, "on_board", window=WINDOW)
        assert outcome.rule is Rule.TIMEOUT and "0.5 s" in outcome.message
        with pytest.raises(ProcessLookupError):
            os.kill(first, 0)
        again = await s.call(mean, "on_board", window=WINDOW)  # re-loaded into the new worker
        second = s.pid
    finally:
        await s.close()
    assert first != second and again.ok and again.value == 4.5


async def test_a_worker_that_dies_mid_call_is_a_crash_and_is_replaced():
    s = Supervisor(SandboxLimits(call_timeout=5))
    await s.start()
    try:
        slow = await s.load(SLOW, "slow.py")
        mean = await s.load(MEAN, "mean.py")
        call = asyncio.create_task(s.call(slow, "on_board", window=WINDOW))
        os.kill(await worker_busy(s), signal.SIGSEGV)  # mid-call: the module's loop is running
        outcome = await call
        after = await s.call(mean, "on_board", window=WINDOW)
    finally:
        await s.close()
    assert outcome.rule is Rule.CRASH and "SIGSEGV" in outcome.message
    assert after.ok


async def test_off_board_gets_results_and_state():
    s = Supervisor()
    await s.start()
    try:
        digest = await s.load(OFF, "off.py")
        outcome = await s.call(digest, "off_board", results={"a": {"n": 2}, "b": {"n": 3}}, params={}, state=[1])
    finally:
        await s.close()
    assert outcome.ok and outcome.value == {"total": 5, "previous": [1]}


async def test_nan_results_are_allowed_and_flagged():
    src = "def on_board(window, params, state):\n    return {'x': float('nan'), 'ok': 1.0}\n"

    s = Supervisor()
    await s.start()
    try:
        outcome = await s.call(await s.load(src, "nan.py"), "on_board", window=WINDOW)
    finally:
        await s.close()
    assert outcome.ok and outcome.flags == ["nan at $.x"]


KEEPER = (
    "kept = []\n\n"
    "def on_board(window, params, state):\n"
    "    kept.append(window['x'].v)\n"
    "    return [float(k.sum()) for k in kept]\n"
)


async def test_windows_through_the_arena_are_private_copies_and_big_ones_use_the_pipe():
    """A module that keeps last call's window must not see this call's data in it
    (the arena is reused), and a window bigger than the arena still arrives."""

    s = Supervisor(SandboxLimits(arena_mb=1))
    await s.start()
    try:
        digest = await s.load(KEEPER, "keeper.py")
        a = await s.call(digest, "on_board", window={"x": (np.arange(10.0), np.ones(10))})
        b = await s.call(digest, "on_board", window={"x": (np.arange(10.0), np.full(10, 2.0))})
        n = 200_000  # 3.2 MB: more than the 1 MiB arena
        c = await s.call(digest, "on_board", window={"x": (np.arange(float(n)), np.ones(n))})
    finally:
        await s.close()
    assert a.value == [10.0] and b.value == [10.0, 20.0] and c.value == [10.0, 20.0, 200_000.0]
