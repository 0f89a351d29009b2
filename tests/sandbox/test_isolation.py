"""A worker per assignment, forked from one zygote: what one analyst's module can
observe belongs to its own assignment, calls of different assignments do not wait
for each other, and the pool stays bounded and survives its zygote."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import time

import numpy as np
import pytest

from oodida.sandbox.errors import Rule, Violation
from oodida.sandbox.host import SandboxHost
from oodida.sandbox.spawner import WORKER_ENV
from oodida.sandbox.supervisor import SandboxLimits
from tests.helpers import eventually, proc_exists, proc_read, proc_read_bytes
from tests.sandbox.workers import worker_busy

WINDOW = {"x": (np.arange(10.0), np.arange(10.0))}


def module(tag: int) -> str:
    return f"def on_board(window, params, state):\n    return {{'tag': {tag}, 'n': len(window['x'].v)}}\n"


KEEPER = (  # assignment 1: multiplies a secret parameter array and keeps the product
    "import numpy as np\n"
    "KEPT = {}\n"
    "def on_board(window, params, state):\n"
    "    KEPT['product'] = np.asarray(params['secret']) * 3.0\n"
    "    return float(np.sum(KEPT['product']))\n"
)
PROBE = (  # assignment 2: looks for freed heap the way issue 11 found it
    "import numpy as np\n"
    "def on_board(window, params, state):\n"
    "    out = []\n"
    "    for n in (100, 1000, 10000):\n"
    "        try:\n"
    "            out.append(np.ones(n).clip(0.0, 1.0, where=np.zeros(n) > 1))\n"
    "        except Exception as e:\n"
    "            out.append(str(e)[:100])\n"
    "    return out\n"
)


def secret_array() -> np.ndarray:
    rng = np.random.default_rng(11)
    return rng.uniform(1e6, 2e6, 100)  # no window, no other value is anything like it


def memory_holds(pid: int, needle: bytes) -> bool:
    """Whether any readable mapping of process `pid` holds `needle` (root only)."""
    with open(f"/proc/{pid}/maps") as f, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in f:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
            if not m or not m.group(3).startswith("r") or "[vvar]" in line or "[vsyscall]" in line:
                continue
            start, end = int(m.group(1), 16), int(m.group(2), 16)
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except OSError:
                continue
    return False


async def test_each_assignment_gets_its_own_worker_from_one_zygote():
    host = SandboxHost()
    try:
        outcomes = {}
        for a in (1, 2, 3):
            outcomes[a] = (await host.run(module(a), f"m{a}.py", "on_board", assignment=a, window=WINDOW)).value
        pids = {a: host.supervisor(a).pid for a in (1, 2, 3)}
        parents = {a: int(proc_read(pid, "stat").rsplit(")", 1)[1].split()[1])
                   for a, pid in pids.items()}
        outcomes, pids, parents, zygote, stats = outcomes, pids, parents, host.zygote.pid, host.stats()
    finally:
        await host.close()
    assert outcomes == {a: {"tag": a, "n": 10} for a in (1, 2, 3)}
    assert len(set(pids.values())) == 3  # three processes, never one shared
    assert set(parents.values()) == {zygote}  # each forked from the zygote, none from us
    assert stats["pid"] == zygote and stats["started"] == 3 and stats["restarts"] == 0 and stats["modules"] == 3


@pytest.mark.skipif(os.geteuid() != 0, reason="reading another process's memory needs root")
async def test_a_module_of_assignment_2_cannot_reach_data_of_assignment_1():
    secret = secret_array()
    product = (secret * 3.0).tobytes()

    host = SandboxHost()
    try:
        first = await host.run(KEEPER, "keeper.py", "on_board", assignment=1, window=WINDOW,
                               params={"secret": secret})
        probe = await host.run(PROBE, "probe.py", "on_board", assignment=2, window=WINDOW)
        pids = host.supervisor(1).pid, host.supervisor(2).pid, host.zygote.pid
        held = [memory_holds(pid, product) for pid in pids]
        total, probed = first.value, probe.value
        (one, two, _), (in_one, in_two, in_zygote) = pids, held
    finally:
        await host.close()
    assert total == pytest.approx(float(np.sum(secret * 3.0)))
    assert one != two
    assert in_one  # the product is there, in assignment 1's own worker: the scan can find it
    assert not in_two and not in_zygote  # and in no other process a module could run in
    leaked = set(np.concatenate([secret, secret * 3.0]).tolist())
    for item in probed:  # whatever the method route handed out holds none of it
        if isinstance(item, np.ndarray):
            assert not leaked & set(item.tolist())


@pytest.mark.timeout(120)
async def test_calls_of_different_assignments_run_side_by_side():
    busy = ("def on_board(window, params, state):\n    n = 0\n    for i in range(params['loops']):\n"
            "        n += i\n    return n\n")

    host = SandboxHost(SandboxLimits(call_timeout=60))
    try:
        await host.load(busy, "busy.py", assignment=1)
        await host.load(module(2), "quick.py", assignment=2)  # both workers up before the race
        finished: list[int] = []

        async def call(a: int, source: str, name: str, **kw) -> None:
            await host.run(source, name, "on_board", assignment=a, window=WINDOW, **kw)
            finished.append(a)

        slow = asyncio.create_task(call(1, busy, "busy.py", params={"loops": 30_000_000}))
        await worker_busy(host.supervisor(1))  # assignment 1's call is running
        started = time.monotonic()
        await call(2, module(2), "quick.py")
        quick = time.monotonic() - started
        slow_done_then = slow.done()
        await slow
    finally:
        await host.close()
    # assignment 2's call answered while assignment 1's was still running: one worker each,
    # and neither waits for the other's lock
    assert finished == [2, 1] and not slow_done_then, (finished, quick)


async def test_max_workers_evicts_the_least_recently_used_idle_worker_and_it_reloads(caplog):
    caplog.set_level(logging.INFO, logger="oodida.sandbox")

    host = SandboxHost(SandboxLimits(max_workers=2))
    try:
        for a in (1, 2):
            await host.run(module(a), f"m{a}.py", "on_board", assignment=a, window=WINDOW)
        first = host.supervisor(1).pid
        assert host.workers == 2
        await host.run(module(3), "m3.py", "on_board", assignment=3, window=WINDOW)  # 1 goes
        evicted_pid_gone = not proc_exists(first) or _zombie(first)
        live = host.workers
        again = await host.run(module(1), "m1.py", "on_board", assignment=1, window=WINDOW)  # 2 goes
        value, new_pid, evictions = again.value, host.supervisor(1).pid != first, host.evictions
        reloads, workers = host.supervisor(1).reloads, host.workers
    finally:
        await host.close()
    assert evicted_pid_gone  # the evicted worker was reaped, not left behind
    assert live == 2 and workers == 2 and evictions == 2
    assert value == {"tag": 1, "n": 10} and new_pid and reloads == 1
    text = caplog.text
    assert "the worker of assignment 1 is evicted (max_workers 2 reached for assignment 3)" in text
    assert "the worker of assignment 2 is evicted" in text
    assert re.search(r"\(assignment 1\): m1\.py version [0-9a-f]{12} loaded again after its worker was evicted", text)


def _zombie(pid: int) -> bool:
    try:
        return proc_read(pid, "stat").rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


@pytest.mark.timeout(120)
async def test_a_busy_worker_is_never_evicted_the_newcomer_waits_for_a_slot():
    busy = ("def on_board(window, params, state):\n    n = 0\n    for i in range(params['loops']):\n"
            "        n += i\n    return n\n")

    host = SandboxHost(SandboxLimits(max_workers=1, call_timeout=60))
    try:
        await host.load(busy, "busy.py", assignment=1)
        slow = asyncio.create_task(host.run(busy, "busy.py", "on_board", assignment=1, window=WINDOW,
                                            params={"loops": 5_000_000}))
        await worker_busy(host.supervisor(1))  # it holds the one slot
        second = await host.run(module(2), "m2.py", "on_board", assignment=2, window=WINDOW)
        slow_done, slow_value, second = slow.done(), (await slow).value, second.value
        evictions, restarts = host.evictions, host.supervisor(1).restarts
    finally:
        await host.close()
    assert slow_done and slow_value == sum(range(5_000_000))  # it ran to its end, then gave up its slot
    assert second == {"tag": 2, "n": 10} and evictions == 1 and restarts == 0


async def test_the_zygote_dying_is_survived(caplog):
    caplog.set_level(logging.WARNING, logger="oodida.sandbox")
    slow = "def on_board(window, params, state):\n    while True:\n        pass\n"

    host = SandboxHost(SandboxLimits(call_timeout=20))
    try:
        assert (await host.run(module(1), "m1.py", "on_board", assignment=1, window=WINDOW)).ok
        digest, _ = await host.load(slow, "slow.py", assignment=2)
        first_zygote, worker = host.zygote.pid, host.supervisor(2).pid
        in_flight = asyncio.create_task(host.supervisor(2).call(digest, "on_board", window=WINDOW))
        await worker_busy(host.supervisor(2))  # mid-call
        os.kill(first_zygote, signal.SIGKILL)
        cut = await in_flight  # its worker went down with the zygote (parent-death signal)
        after = await host.run(module(1), "m1.py", "on_board", assignment=1, window=WINDOW)
        first = first_zygote
        second = host.zygote.pid
        zygotes = host.zygote.started
    finally:
        await host.close()
    assert second is not None and second != first and zygotes == 2
    assert not cut.ok and cut.rule is Rule.CRASH and "went down with the sandbox zygote" in cut.message, cut
    assert after.ok and after.value == {"tag": 1, "n": 10}  # loaded again into a worker of the new zygote
    assert not proc_exists(worker) or _zombie(worker)
    assert f"sandbox zygote {first} died" in caplog.text


async def test_a_killed_worker_is_replaced_from_the_zygote_and_the_breach_is_the_calls_result():
    slow = "def on_board(window, params, state):\n    while True:\n        pass\n"

    host = SandboxHost(SandboxLimits(call_timeout=0.5))
    try:
        zygote = (await host.zygote.start()) and host.zygote.pid
        with pytest.raises(Violation) as breach:
            await host.run(slow, "slow.py", "on_board", assignment=1, window=WINDOW)
        after = await host.run(module(1), "m1.py", "on_board", assignment=1, window=WINDOW)
        other = await host.run(module(2), "m2.py", "on_board", assignment=2, window=WINDOW)
        breach, after, other = breach.value, after.value, other.value
        zygote_after, restarts = host.zygote.pid, host.supervisor(1).restarts
    finally:
        await host.close()
    assert breach.rule is Rule.TIMEOUT and "0.5 s" in breach.message
    assert after == {"tag": 1, "n": 10} and other == {"tag": 2, "n": 10}
    assert zygote == zygote_after and restarts == 1  # the zygote forked the replacement


async def test_release_reaps_a_finished_assignments_worker():
    host = SandboxHost()
    try:
        await host.run(module(1), "m1.py", "on_board", assignment=1, window=WINDOW)
        pid = host.supervisor(1).pid
        await host.release(1)
        await eventually(lambda: not proc_exists(pid) or _zombie(pid), 5, what=f"released worker {pid} to be reaped")
        workers, stats = host.workers, host.stats()
    finally:
        await host.close()
    assert workers == 0 and (not proc_exists(pid) or _zombie(pid))
    assert stats["started"] == 1 and stats["modules"] == 0  # counted, and its versions forgotten


async def test_the_zygote_is_confined_as_far_as_forking_allows():
    host = SandboxHost()
    try:
        await host.run(module(1), "m1.py", "on_board", assignment=1, window=WINDOW)
        pid = host.zygote.pid
        status = proc_read(pid, "status")
        environ = proc_read_bytes(pid, "environ")
        fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        netns = os.readlink(f"/proc/{pid}/ns/net")
        layers, status, environ, fds, netns = host.zygote.layers, status, environ, fds, netns
    finally:
        await host.close()
    optional = set() if os.geteuid() == 0 else {"network namespace"}  # unprivileged user namespaces may be off
    assert all(layer.applied for layer in layers if layer.name not in optional), [
        layer for layer in layers if not layer.applied]
    assert {layer.name for layer in layers} >= {"descriptors", "network namespace", "imports", "zygote seccomp",
                                                 "zygote no_new_privs", "zygote not dumpable"}
    assert "Seccomp:\t2" in status and "NoNewPrivs:\t1" in status
    assert dict(e.split("=", 1) for e in environ.decode().split("\0") if e) == WORKER_ENV
    # 0, 1, 2 (/dev/null), its control socket, and a pidfd per live worker (or spare)
    others = {fd: target for fd, target in fds.items() if fd > 2}
    assert sum(target.startswith("socket:") for target in others.values()) == 1
    assert all(target.startswith("socket:") or "pidfd" in target for target in others.values()), others
    if os.geteuid() == 0:
        assert netns != os.readlink("/proc/self/ns/net")
