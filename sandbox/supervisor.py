"""Gives one assignment its own sandbox worker, talks to it, and replaces it when it breaks.

A worker is forked by the owner's zygote (zygote.py, spawner.py): an exec'd, warmed
template that never holds a secret or an analyst's data, never a fork of the agent
(which would copy its secrets). The worker runs in its own session, with an
environment that holds only fixed thread settings for numeric libraries
(`WORKER_ENV`), and with no descriptor but its request and reply pipes, a stderr
pipe drained here, and the memfd of its shared-memory arena (which it maps and
closes at once). It confines itself (hardening.py) and says which layers took; a
layer that did not is logged at WARNING with the reason. A supervisor serves one
assignment (its `label`): workers are never shared between assignments.

Every request (load or call) has a wall-clock budget, `call_timeout`: past it the
worker gets SIGKILL and the outcome says "timeout". A worker that dies for any other
reason mid-request is a "crash" (or "memory" when the kernel's OOM killer did it,
"timeout" when its CPU-time limit did), with the signal or exit status in the
message. Either way a fresh worker is started at once, in the background, and the
modules are loaded into it again, each when it is next called. Requests are
serialised (one at a time per worker, an asyncio.Lock).

The supervisor never raises for what a module does: it returns a `CallOutcome`.
It raises `PolicyError` from `load` when the compile policy refuses a module (the
worker compiles it, so hostile source is never parsed in the agent's process: the
parser can raise MemoryError or RecursionError on crafted input), and `SandboxError`
when the sandbox itself cannot work (a worker that will not start) or is misused.

Recycling: the worker is long-lived, so its RLIMIT_CPU is a cumulative budget
(`cpu_seconds`). Each reply carries the worker's CPU time; once it passes
max(cpu_seconds / 2, cpu_seconds - 2 * call_timeout - 5) (a call can use at most
its wall-clock budget of CPU: the worker has one thread) the worker is retired after
that call and a fresh one started, so the limit itself only ever fires on a runaway.

All of a Supervisor's methods must be awaited on one event loop, the one that
started it: the worker's pipes are watched by that loop, and the worker's parent-
death signal is tied to the thread that spawned it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np

from oodida.sandbox import protocol
from oodida.sandbox.arena import Arena, window_bytes
from oodida.sandbox.errors import PolicyError, Problem, Rule, SandboxError, Violation
from oodida.sandbox.hardening import Layer
from oodida.sandbox.spawner import ForkedProcess, Zygote

log = logging.getLogger(__name__)

MiB = 2**20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


@dataclass(frozen=True)
class SandboxLimits:
    call_timeout: float = 10.0  # wall-clock seconds per load or call
    start_timeout: float = 30.0  # for a worker to start and confine itself
    memory_mb: int = 1024  # address space of the worker, on top of its arena
    cpu_seconds: int = 600  # cumulative CPU of one worker; recycled before it gets there
    open_files: int = 16
    arena_mb: int = 64  # shared memory for windows (see `Supervisor.call` for bigger ones)
    arena_max_mb: int = 1024
    max_message_bytes: int = 16 * MiB  # one pipe message, either way
    max_result_bytes: int = 15 * MiB  # a module's value (check_result)
    max_stdout: int = 64 * 1024  # characters of print() output kept per call
    max_workers: int = 16  # live workers of one owner (one per assignment), see host.py
    idle_seconds: float = 900.0  # a worker unused this long is reaped (its assignment may be over)
    uid: int = 65534  # the worker's uid when the supervisor runs as root
    netns: bool = True
    seccomp: bool = True
    # A module gets its window as private read-only copies (one memcpy in the worker),
    # so one that keeps an array across calls never sees the next window in it.
    # False: read-only views straight into the arena (no copy; valid for one call).
    copy_windows: bool = True


@dataclass
class CallOutcome:
    ok: bool
    value: Any = None
    flags: list[str] = field(default_factory=list)
    rule: Rule | None = None
    message: str | None = None
    line: int | None = None
    elapsed: float = 0.0
    stdout: str = ""


class _Broken(Exception):
    """The worker died, was killed, or broke the protocol: `outcome` says how."""

    def __init__(self, outcome: CallOutcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def _oom_kills() -> int:
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Worker:
    """One worker process and the supervisor's ends of its pipes, on one event loop."""

    def __init__(
        self, proc: ForkedProcess, to_fd: int, from_fd: int, err_fd: int, arena: Arena, max_message: int
    ) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.to_fd, self.from_fd, self.err_fd = to_fd, from_fd, err_fd
        self.arena = arena
        self.loaded: set[str] = set()
        self.layers: list[Layer] = []
        self.cpu = 0.0
        self.oom_base = _oom_kills()
        self.stderr_tail = bytearray()
        self._loop = asyncio.get_running_loop()
        self._frames = protocol.FrameReader(max_message)
        self._ready: collections.deque[bytes] = collections.deque()
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._expecting = True  # the "ready" message
        self.seq = 0  # number of the last request; its reply must carry it
        for fd in (to_fd, from_fd, err_fd):
            os.set_blocking(fd, False)
        self._loop.add_reader(from_fd, self._on_reply)
        self._loop.add_reader(err_fd, self._on_stderr)

    # --- pipes ----------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _on_reply(self) -> None:
        try:
            data = os.read(self.from_fd, 4 * MiB)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        try:
            if not data:
                raise protocol.PipeClosed("the worker closed its reply pipe")
            self._ready.extend(self._frames.feed(data))
            if (self._ready and not self._expecting) or len(self._ready) > 1:
                # One reply per request, nothing in between: a worker that writes more
                # is not ours any more, and must not make the agent buffer its output.
                self._ready.clear()
                raise protocol.ProtocolError("a reply nobody asked for")
        except (protocol.PipeClosed, protocol.ProtocolError) as exc:
            self._error = exc
            self._loop.remove_reader(self.from_fd)
        self._wake()

    def _on_stderr(self) -> None:
        try:
            data = os.read(self.err_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._loop.remove_reader(self.err_fd)
            return
        self.stderr_tail += data
        del self.stderr_tail[:-4096]

    async def receive(self) -> bytes:
        while not self._ready:
            if self._error is not None:
                raise self._error
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self._expecting = False
        return self._ready.popleft()

    async def send(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._expecting = True
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.to_fd, view):]
            except BlockingIOError:
                writable: asyncio.Future[None] = self._loop.create_future()
                self._loop.add_writer(self.to_fd, _resolve, writable)
                try:
                    await writable
                finally:
                    self._loop.remove_writer(self.to_fd)
            except OSError:  # EPIPE: the worker is gone
                raise protocol.PipeClosed("the worker closed its request pipe") from None

    # --- process ---------------------------------------------------------------------------

    def close_pipes(self) -> None:
        for fd in (self.to_fd, self.from_fd, self.err_fd):
            if fd >= 0:
                self._loop.remove_reader(fd)
                self._loop.remove_writer(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.to_fd = self.from_fd = self.err_fd = -1
        self._error = self._error or protocol.PipeClosed("closed")
        self._wake()

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)

    async def wait(self, grace: float) -> int | None:
        """The exit status once the process is gone (reaped), or None after `grace` seconds."""
        deadline = time.monotonic() + grace
        delay = 0.0005
        while self.proc.poll() is None:
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)
        return self.proc.returncode

    async def finish(self, grace: float = 1.0) -> int | None:
        """Close the pipes (a healthy worker exits on EOF), SIGKILL after `grace`, reap."""
        self.close_pipes()
        code = await self.wait(grace)
        if code is None:
            self.kill()
            code = await self.wait(10.0)
        self.arena.close()
        return code

    def stderr_text(self) -> str:
        return self.stderr_tail.decode("utf-8", "replace").strip()[-1000:]



async def start_worker(zygote: Zygote, limits: SandboxLimits, arena_size: int) -> _Worker:
    """A fresh worker forked by `zygote`, confined, its "ready" message read."""
    arena = Arena(arena_size)
    to_r, to_w = os.pipe2(os.O_CLOEXEC)
    from_r, from_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    for fd in (to_w, from_r):
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, F_SETPIPE_SZ, MiB)  # fewer wake-ups for large messages
    config = {
        "arena_size": arena.size,
        "address_space": limits.memory_mb * MiB + arena.size, "cpu_seconds": limits.cpu_seconds,
        "open_files": limits.open_files, "uid": limits.uid, "seccomp": limits.seccomp,
        "max_message": limits.max_message_bytes, "max_result": limits.max_result_bytes,
        "max_stdout": limits.max_stdout, "copy_windows": limits.copy_windows,
    }
    try:
        proc = await zygote.fork(config, [to_r, from_w, err_w, arena.fd])
    except BaseException:
        for fd in (to_w, from_r, err_r):
            os.close(fd)
        arena.close()
        raise
    finally:
        for fd in (to_r, from_w, err_w):
            os.close(fd)
    worker = _Worker(proc, to_w, from_r, err_r, arena, limits.max_message_bytes)
    try:
        async with asyncio.timeout(limits.start_timeout):
            ready = protocol.decode(await worker.receive())
        if not (ready.get("ready") and ready.get("ok") is True and type(ready.get("layers")) is list):
            raise SandboxError(str(ready.get("message") or "no ready message"))
        worker.layers = [Layer(str(d["name"]), d["applied"] is True, str(d["detail"])) for d in ready["layers"]]
        worker.cpu = float(ready.get("cpu") or 0.0)
    except BaseException as exc:
        code = await worker.finish(0.2)
        if isinstance(exc, asyncio.CancelledError):
            raise
        why = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        stderr = worker.stderr_text()
        raise SandboxError(
            f"the sandbox worker did not start ({why}; exit status {code})" + (f": {stderr}" if stderr else "")
        ) from None
    return worker


class Spares:
    """One worker forked ahead of need, for the next supervisor that needs one (a new
    assignment's, or the replacement of a killed one): the fork, the layers and the
    scheduler's wake-ups are then off that request's path. A spare has never run a
    line of anyone's code; it is handed to exactly one supervisor, and another is
    forked at once."""

    def __init__(self, zygote: Zygote, limits: SandboxLimits) -> None:
        self.zygote = zygote
        self.limits = limits
        self._task: asyncio.Future[_Worker] | None = None
        self._closed = False

    async def take(self) -> _Worker | None:
        """The spare, once it is ready (one still starting is awaited: it is ahead of
        a fork started now); None when there is none or it failed (the caller forks
        its own). Its successor is forked at the next `fill()`, which the owner calls
        once the request that took it is answered: not competing with it for the CPU."""
        task, self._task = self._task, None
        if task is None:
            return None
        try:
            worker = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                self._task = task  # still the spare: for the next one
            raise
        except Exception:  # noqa: BLE001 — reported by the caller's own fork, if it fails too
            return None
        if worker.proc.poll() is not None or worker.proc.exited():  # died waiting (its zygote did)
            asyncio.ensure_future(worker.finish(0.0))
            return None
        return worker

    def fill(self) -> None:
        if self._closed or self._task is not None:
            return
        self._task = asyncio.ensure_future(start_worker(self.zygote, self.limits, self.limits.arena_mb * MiB))
        self._task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done():
            task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            worker = await task
            await worker.finish(0.5)


class Supervisor:
    def __init__(
        self, limits: SandboxLimits | None = None, *, zygote: Zygote | None = None, label: str = "",
        spares: Spares | None = None,
    ) -> None:
        self.limits = limits or SandboxLimits()
        self.spares = spares
        # Workers fork from the owner's zygote; a supervisor without one has its own.
        self._own_zygote = zygote is None
        self.zygote = zygote or Zygote(netns=self.limits.netns, start_timeout=self.limits.start_timeout,
                                       seccomp=self.limits.seccomp)
        self.label = label  # for logs: whose worker this is ("assignment 7")
        self.reloads = 0  # modules loaded again into a worker that replaced an evicted one
        self._reload: set[str] = set()  # versions the evicted worker held: loaded again on demand
        self.layers: list[Layer] = []
        self.restarts = 0  # workers replaced after a timeout or a death
        self.recycles = 0  # workers retired near their CPU budget (or for a bigger arena)
        self.spawned = 0
        self._worker: _Worker | None = None
        self._spawning: asyncio.Task[_Worker] | None = None
        self._lock = asyncio.Lock()
        self._sources: dict[str, tuple[str, str]] = {}  # hash -> (source, name)
        self._failed: dict[str, CallOutcome] = {}  # hash -> why its top level would not run
        self._entries: dict[str, frozenset[str]] = {}  # hash -> entry points it defines
        self._arena_size = self.limits.arena_mb * MiB
        self._retiring: set[asyncio.Task[Any]] = set()
        self._logged_missing: frozenset[str] | None = None
        self._closed = False
        lim = self.limits
        self._recycle_at = max(lim.cpu_seconds * 0.5, lim.cpu_seconds - 2 * lim.call_timeout - 5)

    @property
    def pid(self) -> int | None:
        w = self._worker
        return w.pid if w is not None and w.proc.returncode is None else None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> list[Layer]:
        """Start the worker (if none is running); every layer it reports. Layers not
        applied are logged at WARNING with the reason."""
        async with self._lock:
            await self._live_worker()
        return self.layers

    def closing(self) -> None:
        """No new worker from now on (a call cut short while the owner shuts down must
        not start one); `close()` then stops the one running."""
        self._closed = True

    async def close(self) -> None:
        self._closed = True
        async with self._lock:
            if self._spawning is not None:
                spawning, self._spawning = self._spawning, None
                with contextlib.suppress(Exception, asyncio.CancelledError):  # it is going away anyway
                    self._retire(await spawning)
            if self._worker is not None:
                self._retire(self._worker)
                self._worker = None
        while self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)
        if self._own_zygote:
            await self.zygote.close()

    async def evict(self) -> None:
        """Let the worker go (its owner needs the slot for another assignment's), keep
        every module version: the next request starts a fresh worker and loads into
        it, logged, what it calls."""
        async with self._lock:
            if self._spawning is not None:
                spawning, self._spawning = self._spawning, None
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    self._retire(await spawning)
            if self._worker is not None:
                self._reload |= self._worker.loaded
                self._retire(self._worker)
                self._worker = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _retire(self, worker: _Worker) -> None:
        """Let a worker go in the background: EOF, then SIGKILL if it lingers; reaped."""
        task = asyncio.ensure_future(worker.finish())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _spawn(self) -> _Worker:
        worker = None
        if self.spares is not None and self._arena_size == self.limits.arena_mb * MiB:
            worker = await self.spares.take()  # forked ahead of need: only its module is left to load
        if worker is None:
            worker = await start_worker(self.zygote, self.limits, self._arena_size)
        self.spawned += 1
        self.layers = worker.layers
        self._log_layers(worker)
        return worker

    def _log_layers(self, worker: _Worker) -> None:
        missing = frozenset(layer.name for layer in worker.layers if not layer.applied)
        if missing != self._logged_missing:
            for layer in worker.layers:
                if not layer.applied:
                    log.warning("sandbox worker %d: layer %r not applied: %s", worker.pid, layer.name, layer.detail)
            self._logged_missing = missing
        log.info(
            "sandbox worker %d ready: %d of %d layers (%s)", worker.pid,
            len(worker.layers) - len(missing), len(worker.layers), ", ".join(layer.name for layer in worker.layers),
        )

    async def _live_worker(self) -> _Worker:
        if self._closed:
            raise SandboxError("the supervisor is closed")
        worker = self._worker
        if worker is not None and worker.proc.poll() is None and not worker.proc.exited():
            return worker
        if worker is not None:  # died between requests (killed from outside)
            self._worker = None
            self.restarts += 1
            self._retire(worker)
        if self._spawning is not None:
            spawning, self._spawning = self._spawning, None
            self._worker = await spawning
        else:
            self._worker = await self._spawn()
        return self._worker

    def _replace(self, worker: _Worker) -> None:
        """`worker` is gone or going: start its successor now, in the background."""
        if self._worker is worker:
            self._worker = None
        if not self._closed and self._spawning is None:
            self._spawning = asyncio.ensure_future(self._spawn())
            # a failure here is reported by the next request that awaits it
            self._spawning.add_done_callback(lambda t: t.cancelled() or t.exception())

    # --- requests ----------------------------------------------------------------------------

    async def ping(self) -> float:
        """Round trip to the worker (starting one if needed); the seconds it took."""
        async with self._lock:
            worker = await self._live_worker()
            started = time.monotonic()
            with contextlib.suppress(_Broken):
                worker.seq += 1
                await self._exchange(worker, protocol.encode({"op": "ping", "seq": worker.seq}),
                                     self.limits.call_timeout)
            return time.monotonic() - started

    async def load(self, source: str, name: str) -> str:
        """Compile and load a module in the worker; its sha256 (hex).

        PolicyError with every problem if the compile policy refuses it. A module
        whose top level breaks a rule at run time (a loop, an error) is not an
        exception here: its hash is returned and every call gets that outcome, until
        it is loaded again.
        """
        digest = source_hash(source)
        async with self._lock:
            worker = await self._live_worker()
            if digest in worker.loaded:
                return digest
            self._sources[digest] = (source, name)
            try:
                failure = await self._load_into(worker, digest)
            except PolicyError:
                del self._sources[digest]
                raise
            if failure is None:
                self._failed.pop(digest, None)
            else:
                self._failed[digest] = failure
            return digest

    def entries(self, module_hash: str) -> frozenset[str]:
        """The entry points (on_board, off_board, migrate) a loaded module defines;
        empty for a module not loaded or whose top level failed."""
        return self._entries.get(module_hash, frozenset())

    def failure(self, module_hash: str) -> CallOutcome | None:
        """Why a loaded module's top level would not run, or None when it ran."""
        return self._failed.get(module_hash)

    @property
    def modules(self) -> int:
        """Module versions this supervisor holds (and loads into every new worker)."""
        return len(self._sources)

    async def _load_into(self, worker: _Worker, digest: str) -> CallOutcome | None:
        source, name = self._sources[digest]
        if digest in self._reload:
            self._reload.discard(digest)
            self.reloads += 1
            log.info("sandbox worker %d (%s): %s version %s loaded again after its worker was evicted",
                     worker.pid, self.label or "no assignment", name, digest[:12])
        worker.seq += 1
        request = protocol.encode({"op": "load", "hash": digest, "source": source, "name": name, "seq": worker.seq},
                                  self.limits.max_message_bytes)
        try:
            reply = await self._exchange(worker, request, self.limits.call_timeout, load=True)
        except _Broken as broken:
            outcome = broken.outcome
            outcome.message = f"while loading {name}: {outcome.message}"
            return outcome
        if reply["ok"]:
            worker.loaded.add(digest)
            entries = reply.get("entries")
            if type(entries) is list:
                self._entries[digest] = frozenset(e for e in entries if type(e) is str)
            return None
        if "problems" in reply:
            raise PolicyError(self._problems(reply["problems"]))
        outcome = self._outcome(reply, 0.0)
        outcome.message = f"while loading {name}: {outcome.message}"
        return outcome

    @staticmethod
    def _problems(raw: Any) -> list[Problem]:
        problems = []
        for p in raw if type(raw) is list else []:
            try:
                problems.append(Problem(Rule(p["rule"]), str(p["message"])[:4000],
                                        p.get("line") if type(p.get("line")) is int else None,
                                        p.get("col") if type(p.get("col")) is int else None))
            except (KeyError, ValueError, TypeError, AttributeError):
                continue
        return problems or [Problem(Rule.SYNTAX, "the module was refused")]

    async def call(
        self,
        module_hash: str,
        entry: str,
        *,
        window: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
        results: Mapping[str, Any] | None = None,
        params: Any = None,
        state: Any = None,
    ) -> CallOutcome:
        """Run one entry point of a loaded module; its outcome (never an exception for
        what the module does).

        `window` ({signal: (t, v)}) goes through the shared-memory arena; one that
        does not fit goes through the pipe as raw float64 bytes if it fits in a
        message, else the worker is replaced by one with an arena big enough (up to
        `arena_max_mb`; past that the outcome says "memory")."""
        if module_hash not in self._sources:
            raise SandboxError(f"module {module_hash[:12]} was never loaded")
        request: dict[str, Any] = {"op": "call", "hash": module_hash, "entry": entry, "params": params, "state": state}
        if results is not None:
            request["results"] = dict(results)
        async with self._lock:
            failed = self._failed.get(module_hash)
            if failed is not None:
                return dataclasses.replace(failed, elapsed=0.0)
            worker = await self._live_worker()
            needed = 0 if window is None else window_bytes(window)
            inline = window is not None and needed > worker.arena.size
            if inline and needed + 2**16 > self.limits.max_message_bytes:
                if needed > self.limits.arena_max_mb * MiB:
                    return CallOutcome(False, rule=Rule.MEMORY, message=(
                        f"the window takes {needed / MiB:.1f} MiB, more than the sandbox's limit of "
                        f"{self.limits.arena_max_mb} MiB of shared memory (arena_max_mb); ask for a shorter window"))
                worker = await self._grow_arena(needed)
                inline = False
            if module_hash not in worker.loaded:
                failure = await self._load_into(worker, module_hash)
                if failure is not None:
                    self._failed[module_hash] = failure
                    return failure
            try:
                if inline:
                    assert window is not None
                    request["window_inline"] = {
                        str(k): [np.asarray(t, np.float64), np.asarray(v, np.float64)] for k, (t, v) in window.items()
                    }
                elif window is not None:
                    request["window"] = worker.arena.place(window)
                worker.seq += 1
                request["seq"] = worker.seq
                frame = protocol.encode(request, self.limits.max_message_bytes)
            except protocol.MessageTooLarge as exc:
                return CallOutcome(False, rule=Rule.RESULT_TOO_LARGE, message=(
                    f"the call's params, state and results take {exc.size} bytes, more than the sandbox's "
                    f"{exc.limit}-byte message limit"))
            except (TypeError, ValueError) as exc:
                raise SandboxError(f"cannot pass this to the sandbox: {exc}") from None
            started = time.monotonic()
            try:
                reply = await self._exchange(worker, frame, self.limits.call_timeout)
            except _Broken as broken:
                return broken.outcome
            outcome = self._outcome(reply, time.monotonic() - started)
            if worker.cpu >= self._recycle_at:
                log.info("sandbox worker %d used %.0f s of CPU: replaced by a fresh one", worker.pid, worker.cpu)
                self.recycles += 1
                self._retire(worker)
                self._replace(worker)
            return outcome

    async def _grow_arena(self, needed: int) -> _Worker:
        step = self.limits.arena_mb * MiB
        self._arena_size = min(-(-needed // step) * step, self.limits.arena_max_mb * MiB)
        log.info("a window needs %.1f MiB: a new sandbox worker with an arena of %d MiB",
                 needed / MiB, self._arena_size // MiB)
        old = self._worker
        if old is not None:
            self.recycles += 1
            self._retire(old)
            self._worker = None
        if self._spawning is not None:  # started with the old size: let it go
            spawning, self._spawning = self._spawning, None
            with contextlib.suppress(Exception):
                self._retire(await spawning)
        return await self._live_worker()

    @staticmethod
    def _outcome(reply: dict[str, Any], elapsed: float) -> CallOutcome:
        printed = reply.get("stdout")
        stdout = printed if type(printed) is str else ""
        if reply["ok"]:
            flags = reply.get("flags")
            flags = [str(f)[:500] for f in flags[:1000]] if type(flags) is list else []
            return CallOutcome(True, value=reply.get("value"), flags=flags, elapsed=elapsed, stdout=stdout)
        line = reply.get("line")
        return CallOutcome(
            False, rule=Rule(reply["rule"]), message=str(reply.get("message") or reply["rule"]),
            line=line if type(line) is int else None, elapsed=elapsed, stdout=stdout,
        )

    async def _exchange(self, worker: _Worker, frame: bytes, budget: float, load: bool = False) -> dict[str, Any]:
        """Send one request and wait for its reply within `budget` seconds. Anything
        but a well-formed reply ends this worker and raises _Broken with the outcome;
        its successor is already starting."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(budget):
                await worker.send(frame)
                payload = await worker.receive()
        except TimeoutError:
            worker.kill()
            await self._bury(worker)
            raise _Broken(CallOutcome(
                False, rule=Rule.TIMEOUT, elapsed=time.monotonic() - started,
                message=f"the call took longer than {budget:g} s; the worker (pid {worker.pid}) was killed "
                        "and replaced")) from None
        except (protocol.PipeClosed, protocol.ProtocolError) as exc:
            raise _Broken(await self._death(worker, exc, time.monotonic() - started)) from None
        except BaseException:  # cancelled mid-request: its reply would answer the next one
            worker.kill()
            self.restarts += 1
            self._retire(worker)
            self._replace(worker)
            raise
        try:
            reply = protocol.decode(payload)
            self._check_reply(reply, load, worker.seq)
        except protocol.ProtocolError as exc:
            raise _Broken(await self._death(worker, exc, time.monotonic() - started)) from None
        worker.cpu = reply.get("cpu", worker.cpu)
        return reply

    @staticmethod
    def _check_reply(reply: dict[str, Any], load: bool, seq: int) -> None:
        # Numbered requests: a reply written before the worker read the request (a worker
        # that is not ours any more, answering ahead) carries no number or the wrong one,
        # however the pipe's timing interleaved it with the real one.
        if reply.get("seq") != seq:
            raise protocol.ProtocolError(f"a reply to request {reply.get('seq')!r}, not to request {seq}")
        ok = reply.get("ok")
        if type(ok) is not bool:
            raise protocol.ProtocolError("a reply without ok")
        if not ok and not (load and "problems" in reply):
            rule = reply.get("rule")
            try:
                Rule(rule if type(rule) is str else "")  # no rule is the empty name
            except ValueError:
                raise protocol.ProtocolError(f"a reply with an unknown rule {reply.get('rule')!r}") from None
        if type(reply.get("cpu", 0.0)) not in (int, float):
            raise protocol.ProtocolError("a reply with a bad cpu field")

    async def _bury(self, worker: _Worker) -> int | None:
        """Reap a worker that is dying, count it, start its successor."""
        self.restarts += 1
        self._replace(worker)
        code = await worker.wait(2.0)
        if code is None:
            worker.kill()
            code = await worker.wait(10.0)
        worker.close_pipes()
        worker.arena.close()
        tail = worker.stderr_text()
        if tail:
            log.warning("sandbox worker %d stderr: %s", worker.pid, tail)
        return code

    async def _death(self, worker: _Worker, exc: BaseException, elapsed: float) -> CallOutcome:
        broken_protocol = isinstance(exc, protocol.ProtocolError)
        if broken_protocol:
            worker.kill()  # it is alive and talking nonsense: it is not ours any more
        code = await self._bury(worker)
        where = f"the worker (pid {worker.pid})"
        if worker.proc.lost:
            return CallOutcome(False, rule=Rule.CRASH, elapsed=elapsed,
                               message=f"{where} went down with the sandbox zygote; it was replaced")
        if broken_protocol and code == -signal.SIGKILL:
            return CallOutcome(False, rule=Rule.CRASH, elapsed=elapsed,
                               message=f"{where} broke the protocol ({exc}) and was killed; it was replaced")
        if code is None:
            return CallOutcome(False, rule=Rule.CRASH, elapsed=elapsed, message=f"{where} would not exit")
        if code >= 0:
            return CallOutcome(False, rule=Rule.CRASH, elapsed=elapsed,
                               message=f"{where} exited with status {code}; it was replaced")
        try:
            sig: signal.Signals | None = signal.Signals(-code)
            name = sig.name  # type: ignore[union-attr]
        except ValueError:
            sig, name = None, f"signal {-code}"
        rule, why = Rule.CRASH, f"{where} died of {name}"
        if sig is signal.SIGXCPU:
            rule, why = Rule.TIMEOUT, f"{where} used up its CPU-time limit of {self.limits.cpu_seconds} s (SIGXCPU)"
        elif sig is signal.SIGKILL and worker.oom_base >= 0 and _oom_kills() > worker.oom_base:
            rule, why = Rule.MEMORY, f"{where} was killed by the kernel's out-of-memory killer (SIGKILL)"
        elif sig is signal.SIGKILL and worker.cpu >= self.limits.cpu_seconds:
            rule, why = Rule.TIMEOUT, f"{where} used up its CPU-time limit of {self.limits.cpu_seconds} s (SIGKILL)"
        elif sig is signal.SIGSYS:
            why += ": the seccomp filter stopped a forbidden system call"
        elif sig is signal.SIGXFSZ:
            why += ": it tried to write a file"
        return CallOutcome(False, rule=rule, elapsed=elapsed, message=why + "; it was replaced")


def source_hash(source: str) -> str:
    """The content hash a module is known by everywhere: in the worker, in results
    (`code_hash`), in the registry of versions."""
    return hashlib.sha256(source.encode()).hexdigest()


async def run_entry(supervisor: Supervisor, source: str, name: str, entry: str, **arguments: Any) -> CallOutcome:
    """Load (if need be) and call one entry point; the successful outcome, or a
    `Violation` naming the rule the module broke, at load or at call."""
    try:
        digest = await supervisor.load(source, name)
    except PolicyError as exc:
        raise Violation(exc.problems[0].rule, str(exc)) from None
    outcome = await supervisor.call(digest, entry, **arguments)
    if not outcome.ok:
        assert outcome.rule is not None
        raise Violation(outcome.rule, outcome.message or "", outcome.line)
    return outcome
