"""The sandbox worker as the operating system sees it, and the supervisor's promises.

Every layer the worker reports is checked from outside, in /proc, on the supervisor's
side (uid, no_new_privs, seccomp, capabilities, rlimits, environment, descriptors,
network namespace, session, dumpable). The seccomp filter is checked on its own in a
throw-away process (what it refuses, what it kills, that it covers threads started
before it) and, when strace is installed, the worker's whole loop runs under strace
with the filter on to show it needs nothing the filter refuses. Then the supervisor:
real windows (through the arena, inline, and growing the arena), a timeout and a
fresh worker with its modules re-loaded, memory bombs, crashes, the CPU budget, a
compromised worker that breaks the protocol, cancellation, and the worker dying with
the agent.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from oodida.sandbox import hardening
from oodida.sandbox.errors import PolicyError, Rule, SandboxError
from oodida.sandbox.spawner import WORKER_ENV, Zygote, import_path
from oodida.sandbox.supervisor import MiB, SandboxLimits, Supervisor
from tests.helpers import eventually_blocking, proc_exists, proc_read
from tests.sandbox.workers import worker_busy

ROOT = Path(__file__).resolve().parents[2]
ROOTED = os.geteuid() == 0
SECRET_ENV = "OODIDA_TEST_WORKER_SECRET"
SECRET = "s3cr3t-7b1e0c"
SIGNAL = "SPEED.SPEED"

MEAN = "import numpy as np\n\ndef on_board(window, params, state):\n    return float(np.mean(window['x'].v))\n"
SPIN = "def on_board(window, params, state):\n    while True:\n        pass\n"
STATS = (
    "import numpy as np\n\n"
    "def on_board(window, params, state):\n"
    "    s = window[params['signal']]\n"
    "    fast = s.v > params['limit']\n"
    "    return {'n': len(s), 'mean': float(np.mean(s.v)), 'max': float(np.max(s.v)),\n"
    "            'fast': int(np.count_nonzero(fast)), 'span': float(s.t[-1] - s.t[0]),\n"
    "            'q': np.quantile(s.v, [0.1, 0.5, 0.9])}\n"
)


@pytest.fixture(scope="module")
def shared():
    """One supervisor for the checks that only look: started with a secret in our
    environment, on its own event loop."""
    os.environ[SECRET_ENV] = SECRET
    loop = asyncio.new_event_loop()
    supervisor = Supervisor(SandboxLimits(call_timeout=5.0, memory_mb=512, arena_mb=32))
    try:
        loop.run_until_complete(supervisor.start())
        yield supervisor, loop
    finally:
        del os.environ[SECRET_ENV]
        loop.run_until_complete(supervisor.close())
        loop.close()


def status(pid: int) -> dict[str, str]:
    text = proc_read(pid, "status")
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def limits_of(pid: int) -> dict[str, tuple[str, str]]:
    out = {}
    for line in proc_read(pid, "limits").splitlines()[1:]:
        m = re.match(r"(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)", line)
        if m:
            out[m.group(1)] = (m.group(2), m.group(3))
    return out


# --- the layers, seen from outside ---------------------------------------------------------


def test_the_worker_reports_every_layer_and_each_took(shared):
    supervisor, _ = shared
    names = [layer.name for layer in supervisor.layers]
    assert names == [
        "descriptors", "network namespace", "imports", "unprivileged uid", "capabilities", "no_new_privs",
        "not dumpable", "parent death signal", "rlimits", "seccomp",
    ]
    if ROOTED:  # the agent's case (and CI's): every layer must hold
        assert all(layer.applied for layer in supervisor.layers), supervisor.layers
    for layer in supervisor.layers:
        assert layer.detail, layer  # applied or not, it says what


@pytest.mark.skipif(not ROOTED, reason="the uid switch needs root (the agent's case)")
def test_uid_no_new_privs_seccomp_and_capabilities_in_proc(shared):
    supervisor, _ = shared
    st = status(supervisor.pid)
    assert st["Uid"].split() == ["65534"] * 4 and st["Gid"].split() == ["65534"] * 4
    assert st["Groups"].strip() == ""
    assert st["NoNewPrivs"] == "1"
    assert st["Seccomp"] == "2" and int(st["Seccomp_filters"]) >= 1
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0 and int(st["CapInh"], 16) == 0
    assert st["Threads"] == "1"
    # not dumpable: its /proc files belong to root although it runs as 65534
    assert os.stat(f"/proc/{supervisor.pid}/environ").st_uid == 0
    assert os.getsid(supervisor.pid) == supervisor.pid  # its own session: no terminal signals


def test_rlimits_in_proc(shared):
    supervisor, _ = shared
    lim = limits_of(supervisor.pid)
    address_space = str(512 * MiB + 32 * MiB)
    assert lim["Max address space"] == (address_space, address_space)
    assert lim["Max cpu time"] == ("600", "605")
    assert lim["Max open files"] == ("16", "16")
    assert lim["Max file size"] == ("0", "0")
    assert lim["Max core file size"] == ("0", "0")
    assert lim["Max processes"] == ("0", "0")


def test_the_environment_holds_no_secret(shared):
    supervisor, _ = shared
    assert os.environ[SECRET_ENV] == SECRET  # ours has it
    environ = Path(f"/proc/{supervisor.pid}/environ").read_bytes()
    entries = dict(e.split("=", 1) for e in environ.decode().split("\0") if e)
    assert entries == WORKER_ENV
    assert SECRET.encode() not in environ and b"OODIDA" not in environ


def test_only_its_pipes_are_open(shared):
    supervisor, _ = shared
    pid = supervisor.pid
    fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert fds[0] == fds[1] == "/dev/null"
    others = {fd: target for fd, target in fds.items() if fd > 1}
    assert len(others) == 3 and all(t.startswith("pipe:") for t in others.values()), fds  # stderr, request, reply
    # the arena is mapped (read-only, shared), but no descriptor to it is left
    maps = proc_read(pid, "maps")
    arena = [line for line in maps.splitlines() if "oodida-arena" in line]
    assert arena and all(line.split()[1] == "r--s" for line in arena), arena


@pytest.mark.skipif(not ROOTED, reason="a network namespace as non-root needs user namespaces; reported, not asserted")
def test_its_network_namespace_is_empty_and_unreachable(shared):
    supervisor, _ = shared
    pid = supervisor.pid
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    interfaces = [line.split(":")[0].strip() for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]]
    assert interfaces == ["lo"]
    if shutil.which("nsenter") is None:
        pytest.skip("nsenter is not installed: cannot try a connection from inside the namespace")
    probe = (
        "import socket, json\nout = {}\n"
        "for host in ('127.0.0.1', '1.1.1.1'):\n"
        "    s = socket.socket()\n    s.settimeout(2)\n"
        "    try:\n        s.connect((host, 80))\n        out[host] = 'connected'\n"
        "    except OSError as e:\n        out[host] = e.strerror\n"
        "print(json.dumps(out))\n"
    )
    out = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-I", "-c", probe],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"127.0.0.1": "Network is unreachable", "1.1.1.1": "Network is unreachable"}


# --- the seccomp filter on its own -----------------------------------------------------------

FILTER_PROBE = r'''
import ctypes, errno, json, mmap, os, resource, socket, sys, threading
sys.path.insert(0, ROOT)
from oodida.sandbox import hardening
libc = ctypes.CDLL(None, use_errno=True)
r, w = os.pipe()
spare_r, spare_w = os.pipe()
os.write(spare_w, b"x")
anon = mmap.mmap(-1, 4096)
addr = ctypes.addressof(ctypes.c_char.from_buffer(anon))
go, done, seen = threading.Event(), threading.Event(), {}
def older_thread():  # started before the filter: TSYNC must cover it too
    go.wait()
    try:
        open("/etc/hostname").close()
        seen["open"] = "allowed"
    except OSError as e:
        seen["open"] = errno.errorcode[e.errno]
    done.set()
threading.Thread(target=older_thread).start()
layer = hardening.seccomp_filter([r], [w, 1, 2])
out = {"layer": layer.applied, "detail": layer.detail}
def attempt(name, fn):
    try:
        rc = fn()
        out[name] = errno.errorcode[ctypes.get_errno()] if rc == -1 else "allowed"
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
    except Exception as e:
        out[name] = type(e).__name__
attempt("write_own_pipe", lambda: os.write(w, b"ok"))
attempt("read_own_pipe", lambda: os.read(r, 2))
attempt("write_other_pipe", lambda: os.write(spare_w, b"x"))
attempt("read_other_pipe", lambda: os.read(spare_r, 1))
attempt("open", lambda: open("/etc/hostname"))
attempt("socket", lambda: socket.socket())
attempt("fork", lambda: os.fork())
attempt("thread", lambda: threading.Thread(target=print).start())
attempt("exec_map", lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC))
attempt("data_map", lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE))
attempt("mprotect_exec", lambda: libc.mprotect(ctypes.c_void_p(addr), 4096, mmap.PROT_READ | mmap.PROT_EXEC))
attempt("kill_self", lambda: os.kill(os.getpid(), 0))
attempt("kill_parent", lambda: os.kill(os.getppid(), 0))
attempt("unshare", lambda: libc.unshare(0x40000000))
attempt("prctl", lambda: libc.prctl(4, 1, 0, 0, 0))
attempt("ptrace", lambda: libc.ptrace(0, 0, 0, 0))
attempt("setrlimit", lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (8, 8)))
go.set()
done.wait(5)
out["older_thread_open"] = seen.get("open")
print(json.dumps(out), flush=True)
os.execv("/bin/true", ["true"])  # must kill the process
print("exec returned", flush=True)
'''.replace("ROOT", repr(str(ROOT)))


def test_the_filter_refuses_what_an_escape_would_try_and_kills_exec():
    out = subprocess.run([sys.executable, "-I", "-c", FILTER_PROBE], capture_output=True, text=True, timeout=60,
                         env=dict(WORKER_ENV), check=False)
    assert out.returncode == -signal.SIGSYS, (out.returncode, out.stdout, out.stderr)  # execve: killed
    lines = out.stdout.splitlines()
    assert len(lines) == 1, lines  # nothing after the exec
    result = json.loads(lines[0])
    assert result.pop("layer") is True, result
    result.pop("detail")
    assert result == {
        "write_own_pipe": "allowed", "read_own_pipe": "allowed", "kill_self": "allowed", "data_map": "allowed",
        "write_other_pipe": "EPERM", "read_other_pipe": "EPERM", "open": "EPERM", "socket": "EPERM",
        "fork": "EPERM", "thread": "RuntimeError", "exec_map": "EPERM", "mprotect_exec": "EPERM",
        "kill_parent": "EPERM", "unshare": "EPERM", "prctl": "EPERM", "ptrace": "EPERM",
        "setrlimit": "ValueError",  # the resource module's word for the kernel's EPERM
        "older_thread_open": "EPERM",
    }


@pytest.mark.timeout(180)
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (apt-get install strace)")
async def test_the_loop_uses_only_allowed_syscalls(tmp_path):
    """The allow-list's evidence: the whole loop under strace, filter on. After the
    filter loads, no call may be refused, and none may be outside the list."""

    class Traced(Zygote):  # the zygote and every worker it forks (-f)
        def _command(self, config):
            out = tmp_path / f"strace.{self.started}"  # one file per zygote
            return ["strace", "-f", "-qq", "-s", "0", "-o", str(out)] + super()._command(dict(config, ppid=None))

    modules = {
        "stats": (STATS, "on_board"),
        "errors": ("def on_board(window, params, state):\n    return {}['missing']\n", "on_board"),
        "memory": ("def on_board(window, params, state):\n    return len('x' * 10 ** 10)\n", "on_board"),
        "growth": (("def on_board(window, params, state):\n    a = []\n    while True:\n"
                    "        a.append([0] * 10 ** 6)\n"), "on_board"),
        "recursion": (("def on_board(window, params, state):\n    def f(n):\n        return f(n + 1)\n"
                       "    return f(0)\n"), "on_board"),
        "prints": (("import numpy as np\ndef on_board(window, params, state):\n    for i in range(20000):\n"
                    "        print(i)\n    return float(np.mean(np.zeros(0)))\n"), "on_board"),
        "big": ("def on_board(window, params, state):\n    return window[params['signal']].v * 2\n", "on_board"),
        "refused": ("def on_board(window, params, state):\n    return list(range(2000000))\n", "on_board"),
        "off": ("def off_board(results, params, state):\n    return {k: r['a'] * 2 for k, r in results.items()}\n",
                "off_board"),
    }

    limits = SandboxLimits(call_timeout=30, memory_mb=256, arena_mb=4, max_message_bytes=8 * MiB,
                           max_result_bytes=7 * MiB)
    s = Supervisor(limits, zygote=Traced())
    await s.start()
    try:
        outcomes = {}
        small = {SIGNAL: (np.arange(1000.0), np.linspace(0, 120, 1000))}  # through the arena
        large = {SIGNAL: (np.arange(3e5), np.ones(300_000))}  # 4.8 MB: inline, through the pipe
        huge = {SIGNAL: (np.arange(1e6), np.ones(10**6))}  # 16 MB: a new worker with a bigger arena
        for name, (source, entry) in modules.items():
            digest = await s.load(source, f"{name}.py")
            if entry == "off_board":
                o = await s.call(digest, entry, results={"a": {"a": np.arange(5.0)}}, params={}, state=None)
            else:
                o = await s.call(digest, entry, window=large if name == "big" else small,
                                 params={"signal": SIGNAL, "limit": 50.0}, state={"x": np.ones(3)})
            outcomes[name] = o
        outcomes["huge"] = await s.call(await s.load(STATS, "stats.py"), "on_board", window=huge,
                                        params={"signal": SIGNAL, "limit": 0.5})
        outcomes = outcomes
    finally:
        await s.close()
        await s.zygote.close()
    assert outcomes["stats"].ok and outcomes["big"].ok and outcomes["off"].ok and outcomes["huge"].ok
    assert outcomes["errors"].rule is Rule.ERROR and outcomes["recursion"].rule is Rule.ERROR
    assert outcomes["memory"].rule is Rule.MEMORY and outcomes["growth"].rule is Rule.MEMORY
    assert outcomes["refused"].rule is Rule.RESULT_TOO_LARGE and outcomes["prints"].ok

    allowed = set(hardening.ALLOWED_SYSCALLS) | set(hardening.CONDITIONAL_SYSCALLS)
    lines = [line for trace in sorted(tmp_path.glob("strace.*")) for line in trace.read_text().splitlines()]
    confined: set[str] = set()  # pids whose filter is loaded
    zygotes: set[str] = set()  # the exec'd processes: their filter is a deny-list, not the workers' allow-list
    filtered_zygotes: set[str] = set()
    used: dict[str, int] = {}
    refused = []
    for line in lines:
        m = re.match(r"(\d+)\s+(?:<\.\.\. )?(\w+)", line)
        if not m:
            continue
        pid, name = m.groups()
        if not zygotes:
            zygotes.add(pid)  # the first traced process: the one strace exec'd
        if name == "seccomp" and "SECCOMP_SET_MODE_FILTER" in line and line.rstrip().endswith("= 0"):
            # the filter is in: libseccomp's earlier probes of the API failed on purpose
            (filtered_zygotes if pid in zygotes else confined).add(pid)
            continue
        if pid not in confined or name in ("exited", "killed", "resumed"):
            continue
        used[name] = used.get(name, 0) + 1
        if re.search(r"= -1 E(PERM|ACCES)|SIGSYS", line):
            refused.append(line)
    assert len(confined) == 2  # the first worker and the one with a bigger arena
    assert filtered_zygotes == zygotes and len(zygotes) == 1  # one zygote forked both, its own filter loaded
    assert not refused, refused[:10]
    assert set(used) <= allowed, sorted(set(used) - allowed)
    assert {"read", "write", "mmap"} <= set(used)


# --- the supervisor ----------------------------------------------------------------------------


async def _load_and_call(supervisor, source, entry="on_board", **kwargs):
    digest = await supervisor.load(source, "m.py")
    return await supervisor.call(digest, entry, **kwargs)


def test_a_good_module_over_a_real_window(shared, decoded_log):
    supervisor, loop = shared
    t, v = decoded_log["series"][SIGNAL]
    t, v = t[:20000], v[:20000]
    outcome = loop.run_until_complete(asyncio.wait_for(_load_and_call(
        supervisor, STATS, window={SIGNAL: (t, v)}, params={"signal": SIGNAL, "limit": 50.0}), 30))
    assert outcome.ok, outcome
    value = outcome.value
    assert value["n"] == len(v) and value["mean"] == pytest.approx(float(np.mean(v)), rel=1e-12)
    assert value["max"] == float(np.max(v)) and value["fast"] == int(np.count_nonzero(v > 50.0))
    assert value["span"] == pytest.approx(float(t[-1] - t[0]))
    np.testing.assert_array_equal(value["q"], np.quantile(v, [0.1, 0.5, 0.9]))


def test_a_million_samples_through_the_arena(shared):
    supervisor, loop = shared
    rng = np.random.default_rng(7)
    v = rng.normal(size=10**6)
    t = np.arange(10**6) * 0.01
    src = "import numpy as np\n\ndef on_board(window, params, state):\n" \
          "    return [float(np.mean(window['v'].v)), float(np.sum(window['v'].t)), len(window['v'])]\n"
    pid = supervisor.pid
    outcome = loop.run_until_complete(_load_and_call(supervisor, src, window={"v": (t, v)}))
    assert outcome.ok, outcome
    assert outcome.value == [pytest.approx(float(np.mean(v)), rel=1e-12), pytest.approx(float(np.sum(t))), 10**6]
    assert supervisor.pid == pid  # 16 MB fit in the 32 MiB arena: same worker


def test_arrays_and_print_output_travel_as_they_are(shared):
    supervisor, loop = shared
    src = (
        "import numpy as np\n\n"
        "def on_board(window, params, state):\n"
        "    print('scale', params['k'][0])\n"
        "    m = params['m'] + 42.0\n"
        "    return {'m': m, 'mask': window['x'].v > 1, 'i': np.arange(3, dtype=np.int32), 'state': state}\n"
    )
    params = {"k": np.array([2.5]), "m": np.zeros((2, 3))}
    outcome = loop.run_until_complete(_load_and_call(
        supervisor, src, window={"x": (np.arange(4.0), np.arange(4.0))}, params=params, state=[1, (2, 3)]))
    assert outcome.ok, outcome
    assert outcome.stdout == "scale 2.5\n"
    value = outcome.value
    assert value["m"].shape == (2, 3) and value["m"].dtype == np.float64 and (value["m"] == 42.0).all()
    assert value["mask"].dtype == np.bool_ and value["mask"].tolist() == [False, False, True, True]
    assert value["i"].dtype == np.int32 and value["state"] == [1, [2, 3]]


def test_print_floods_are_bounded(shared):
    supervisor, loop = shared
    src = "def on_board(window, params, state):\n    for i in range(100000):\n        print('x' * 50)\n    return 1\n"
    outcome = loop.run_until_complete(_load_and_call(supervisor, src, window={}))
    assert outcome.ok and outcome.value == 1
    assert len(outcome.stdout) < 64 * 1024 + 200 and outcome.stdout.endswith("of output not kept]\n")


def test_memory_bombs_are_refused_inside_and_the_worker_lives_on(shared):
    supervisor, loop = shared
    pid, restarts = supervisor.pid, supervisor.restarts
    for bomb in ("np.zeros(10 ** 10)", "[0] * 10 ** 10", "np.ones((30000, 30000))"):
        src = f"import numpy as np\n\ndef on_board(window, params, state):\n    return len({bomb})\n"
        outcome = loop.run_until_complete(_load_and_call(supervisor, src, window={}))
        assert outcome.rule is Rule.MEMORY and outcome.line == 4, (bomb, outcome)
    assert supervisor.pid == pid and supervisor.restarts == restarts


def test_compile_refusals_are_policy_errors_even_for_sources_that_break_the_parser(shared):
    supervisor, loop = shared
    pid = supervisor.pid
    with pytest.raises(PolicyError) as err:
        loop.run_until_complete(supervisor.load("import os\n\ndef on_board(w, p, s):\n    return 1\n", "os.py"))
    assert err.value.problems[0].rule is Rule.FORBIDDEN_IMPORT and err.value.problems[0].line == 1
    # the parser itself gives up on these (MemoryError, RecursionError): in the worker, not here
    for source in ("x = " + "-" * 100_000 + "1\n", "x = " + "+".join(["a"] * 100_000) + "\n"):
        with pytest.raises(PolicyError) as err:
            loop.run_until_complete(supervisor.load(source, "nested.py"))
        assert err.value.problems[0].rule is Rule.SYNTAX, err.value.problems
    assert supervisor.pid == pid


async def test_many_calls_reuse_one_long_lived_worker():
    async with Supervisor() as s:
        digest = await s.load(MEAN, "mean.py")
        pid = s.pid
        window = {"x": (np.arange(10.0), np.arange(10.0))}
        values = [(await s.call(digest, "on_board", window=window)).value for _ in range(300)]
        before, after, restarts, spawned, values = pid, s.pid, s.restarts, s.spawned, values
    assert before == after and restarts == 0 and spawned == 1 and values == [4.5] * 300


async def test_a_timeout_kills_the_worker_and_a_fresh_one_gets_the_modules_back():
    async with Supervisor(SandboxLimits(call_timeout=1.0)) as s:
        mean = await s.load(MEAN, "mean.py")
        spin = await s.load(SPIN, "spin.py")
        first = s.pid
        started = time.monotonic()
        timeout = await s.call(spin, "on_board", window={})
        took = time.monotonic() - started
        gone = not proc_exists(first)
        again = await s.call(mean, "on_board", window={"x": (np.arange(4.0), np.arange(4.0))})  # no load()
        first, second, timeout, took, gone, again, restarts = first, s.pid, timeout, took, gone, again, s.restarts
    assert timeout.rule is Rule.TIMEOUT and "1 s" in timeout.message and str(first) in timeout.message
    assert 1.0 <= took < 2.0 and gone
    assert second != first and again.ok and again.value == 1.5 and restarts == 1


async def test_deaths_are_crashes_with_the_signal_and_the_worker_is_replaced():
    async with Supervisor(SandboxLimits(call_timeout=10)) as s:
        spin = await s.load(SPIN, "spin.py")
        mean = await s.load(MEAN, "mean.py")
        outcomes = []
        for sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGKILL):
            call = asyncio.create_task(s.call(spin, "on_board", window={}))
            os.kill(await worker_busy(s), sig)
            outcomes.append(await call)
        after = await s.call(mean, "on_board", window={"x": (np.arange(4.0), np.arange(4.0))})
        outcomes, after, restarts = outcomes, after, s.restarts
    for outcome, name in zip(outcomes, ("SIGSEGV", "SIGABRT", "SIGKILL"), strict=True):
        assert outcome.rule is Rule.CRASH and f"died of {name}" in outcome.message, outcome
    assert after.ok and after.value == 1.5 and restarts == 3


@pytest.mark.timeout(120)
async def test_the_cpu_budget_kills_a_runaway_and_recycling_keeps_calls_clear_of_it():
    busy = "def on_board(window, params, state):\n    n = 0\n    for i in range(3000000):\n" \
           "        n += i\n    return n\n"

    # cpu_seconds=2: a spinning call meets RLIMIT_CPU (SIGXCPU) long before its 10 s budget
    async with Supervisor(SandboxLimits(call_timeout=10, cpu_seconds=2)) as s:
        spin = await s.load(SPIN, "spin.py")
        runaway = await s.call(spin, "on_board", window={})
    # cpu_seconds=4: recycled once past half of it, so no call ever meets the limit
    async with Supervisor(SandboxLimits(call_timeout=10, cpu_seconds=4)) as s:
        digest = await s.load(busy, "busy.py")
        first, outcomes = s.pid, []
        for _ in range(30):  # each call ~0.3-0.5 s of CPU: recycled after a handful
            outcomes.append(await s.call(digest, "on_board", window={}))
            if s.recycles:
                break
        outcomes.append(await s.call(digest, "on_board", window={}))  # on the fresh worker
        runaway, outcomes, first, second, recycles, restarts = runaway, outcomes, first, s.pid, s.recycles, s.restarts
    assert runaway.rule is Rule.TIMEOUT and "SIGXCPU" in runaway.message, runaway
    assert all(o.ok for o in outcomes), outcomes
    assert recycles == 1 and second not in (None, first) and restarts == 0


async def test_windows_too_big_for_the_arena_go_inline_then_grow_it():
    src = "import numpy as np\n\ndef on_board(window, params, state):\n    return float(np.sum(window['x'].v))\n"

    limits = SandboxLimits(arena_mb=1, arena_max_mb=8, max_message_bytes=4 * MiB, max_result_bytes=3 * MiB)
    async with Supervisor(limits) as s:
        digest = await s.load(src, "sum.py")
        pid = s.pid
        out = []
        for n in (1000, 100_000, 400_000, 10**6):  # 16 KB, 1.6 MB (inline), 6.4 MB (grown), 16 MB (too big)
            o = await s.call(digest, "on_board", window={"x": (np.arange(float(n)), np.ones(n))})
            out.append((o, s.pid))
    (a, pa), (b, pb), (c, pc), (d, _) = out
    assert a.value == 1000.0 and pa == pid
    assert b.value == 100_000.0 and pb == pid  # through the pipe, same worker
    assert c.value == 400_000.0 and pc != pid  # a new worker with an 8 MiB arena
    assert d.rule is Rule.MEMORY and "arena_max_mb" in d.message


async def test_a_module_whose_top_level_breaks_a_rule_fails_every_call_until_loaded_again():
    looping = "while True:\n    pass\n\ndef on_board(window, params, state):\n    return 1\n"
    failing = "x = 1 / 0\n\ndef on_board(window, params, state):\n    return 1\n"

    async with Supervisor(SandboxLimits(call_timeout=1.0)) as s:
        loop_hash = await s.load(looping, "looping.py")  # costs one timeout, not an exception
        first = await s.call(loop_hash, "on_board", window={})
        started = time.monotonic()
        second = await s.call(loop_hash, "on_board", window={})  # remembered: no second timeout
        quick = time.monotonic() - started
        fail_hash = await s.load(failing, "failing.py")
        failed = await s.call(fail_hash, "on_board", window={})
        first, second, quick, failed, restarts = first, second, quick, failed, s.restarts
    assert first.rule is second.rule is Rule.TIMEOUT and "while loading looping.py" in first.message
    assert quick < 0.1 and restarts == 1
    assert failed.rule is Rule.ERROR and "ZeroDivisionError" in failed.message and failed.line == 1


async def test_a_cancelled_call_costs_the_worker_not_the_next_answer():
    async with Supervisor(SandboxLimits(call_timeout=10)) as s:
        spin = await s.load(SPIN, "spin.py")
        mean = await s.load(MEAN, "mean.py")
        first = s.pid
        call = asyncio.create_task(s.call(spin, "on_board", window={}))
        await worker_busy(s)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        after = await s.call(mean, "on_board", window={"x": (np.arange(4.0), np.arange(4.0))})
        second = s.pid
    assert second != first and after.ok and after.value == 1.5


async def test_close_reaps_the_worker():
    s = Supervisor()
    await s.start()
    pid = s.pid
    await s.close()
    assert not proc_exists(pid)  # exited and reaped, no zombie
    with pytest.raises(SandboxError):
        await _call_after_close()


async def _call_after_close():
    s = Supervisor()
    await s.start()
    await s.close()
    await s.load(MEAN, "mean.py")


ORPHAN = r'''
import asyncio, sys
sys.path.insert(0, ROOT)
from oodida.sandbox.supervisor import SandboxLimits, Supervisor
async def main():
    s = Supervisor(SandboxLimits(call_timeout=600))
    await s.start()
    digest = await s.load(SPIN, "spin.py")
    print(s.pid, flush=True)
    await s.call(digest, "on_board", window={})
asyncio.run(main())
'''.replace("ROOT", repr(str(ROOT))).replace("SPIN", repr(SPIN))


def test_a_worker_dies_with_its_supervisor():
    """kill -9 of the agent leaves no worker spinning (PR_SET_PDEATHSIG)."""
    agent = subprocess.Popen([sys.executable, "-c", ORPHAN], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(agent.stdout.readline())
        eventually_blocking(lambda: proc_read(pid, "stat").split()[2] == "R", 10, what=f"worker {pid} to spin")
    finally:
        agent.kill()
        agent.wait()
        agent.stdout.close()

    def dead() -> bool:
        try:
            return proc_read(pid, "stat").split()[2] in ("Z", "X")
        except FileNotFoundError:
            return True

    try:
        eventually_blocking(dead, 5, what=f"worker {pid} to die with its supervisor")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the worker outlived its supervisor")


# --- a compromised worker --------------------------------------------------------------------

FAKE = r'''
import json, os, struct, sys
c = json.loads(sys.argv[-1]); sys.path[:0] = c["path"]
import cbor2
from oodida.sandbox import protocol
mode = MODE
protocol.write_message(c["wfd"], {"ok": True, "ready": True, "pid": os.getpid(), "layers": []})
while True:
    req = protocol.read_message(c["rfd"])
    if req["op"] == "load":
        protocol.write_message(c["wfd"], {"ok": True, "hash": req["hash"], "seq": req["seq"]})
        if mode == "chatty":  # and then some: replies nobody asked for
            for _ in range(100):
                protocol.write_message(c["wfd"], {"ok": True, "value": "x" * 10000})
        continue
    if mode == "oversize":
        os.write(c["wfd"], struct.pack(">I", 2**31))
    elif mode == "tag":
        body = cbor2.dumps({"ok": True, "value": cbor2.CBORTag(1, 0)})
        protocol.write_all(c["wfd"], protocol.HEADER.pack(len(body)) + body)
    elif mode == "bomb":  # 3 MB that would be 3 million Python lists
        body = (b"\xa2" + cbor2.dumps("ok") + b"\xf5" + cbor2.dumps("value") + b"\x9a"
                + struct.pack(">I", 3_000_000) + b"\x80" * 3_000_000)
        protocol.write_all(c["wfd"], protocol.HEADER.pack(len(body)) + body)
    elif mode == "rule":
        protocol.write_message(c["wfd"], {"ok": False, "rule": "all is well", "message": "x", "seq": req["seq"]})
    elif mode == "exit":
        os._exit(3)
    elif mode == "silent":
        pass
'''


@pytest.mark.parametrize("mode", ["oversize", "tag", "bomb", "rule", "chatty", "exit", "silent"])
async def test_a_worker_that_breaks_the_protocol_is_killed_and_reported(mode):
    class Compromised(Zygote):  # its "workers": a program that is not ours any more
        async def fork(self, config, fds):
            rfd, wfd, err, _arena = fds
            c = dict(config, rfd=rfd, wfd=wfd, path=import_path())
            # the supervisor takes a Popen-like worker from its zygote (poll, pid), as from the real one
            proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", FAKE.replace("MODE", repr(mode)),  # noqa: ASYNC220
                                     json.dumps(c)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                    pass_fds=(rfd, wfd), start_new_session=True)
            proc.lost = False  # the supervisor's question of a worker that went down with its zygote
            proc.exited = lambda: proc.poll() is not None
            return proc

    async with Supervisor(SandboxLimits(call_timeout=2.0), zygote=Compromised()) as s:
        digest = await s.load(MEAN, "mean.py")
        first = s.pid
        outcome = await s.call(digest, "on_board", window={})
        restarts = s.restarts
    assert not outcome.ok and restarts == 1
    assert not proc_exists(first)
    if mode == "silent":
        assert outcome.rule is Rule.TIMEOUT
    elif mode == "exit":
        assert outcome.rule is Rule.CRASH and "exited with status 3" in outcome.message
    else:
        assert outcome.rule is Rule.CRASH and "broke the protocol" in outcome.message, outcome
