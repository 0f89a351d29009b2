"""Starts the sandbox worker, talks to it, and replaces it when it breaks.

The worker is exec'd (never a fork of the agent or server, which would copy their
secrets), with an empty environment but for fixed thread settings, and no
descriptor but its two pipes. Every call has a wall-clock budget: past it the worker
is killed with SIGKILL and the call's outcome says "timeout". A worker that dies for
any reason is replaced on the next call and given back every module it had. The
supervisor never raises for what a module does; it returns an outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mmap
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sandbox import protocol
from sandbox.errors import PolicyError, Rule, SandboxError
from sandbox.hardening import Layer
from sandbox.policy import check_source

log = logging.getLogger(__name__)

# No secrets, no paths from the caller: only what makes numeric libraries behave.
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class SandboxLimits:
    call_timeout: float = 10.0  # wall-clock seconds per call
    start_timeout: float = 30.0
    memory_mb: int = 1024  # address space of the worker
    cpu_seconds: int = 3600  # cumulative; the worker is recycled before it gets there
    open_files: int = 16
    max_result_bytes: int = 16 * 2**20
    uid: int = 65534
    netns: bool = True
    arena_mb: int = 64  # shared memory for windows; a bigger window goes over the pipe


@dataclass
class CallOutcome:
    ok: bool
    value: Any = None
    flags: list[str] = field(default_factory=list)
    rule: Rule | None = None
    message: str | None = None
    line: int | None = None
    elapsed: float = 0.0


class Supervisor:
    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.proc: subprocess.Popen[bytes] | None = None
        self.layers: list[Layer] = []
        self._to_worker: int | None = None
        self._from_worker: int | None = None
        self._sources: dict[str, tuple[str, str]] = {}  # hash -> (source, name)
        self._loaded: set[str] = set()  # hashes loaded into the current worker
        self._lock = asyncio.Lock()
        self.restarts = 0
        self._arena: mmap.mmap | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> list[Layer]:
        async with self._lock:
            await self._spawn()
        return self.layers

    async def _spawn(self) -> None:
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        limits = self.limits
        # A fresh arena per worker, mapped by it before its seccomp filter loads.
        arena_fd = os.memfd_create("oodida-arena", os.MFD_CLOEXEC)
        os.ftruncate(arena_fd, limits.arena_mb << 20)
        self._arena = mmap.mmap(arena_fd, limits.arena_mb << 20)
        config = {
            "rfd": to_r,
            "wfd": from_w,
            "memory_bytes": limits.memory_mb << 20,
            "cpu_seconds": limits.cpu_seconds,
            "open_files": limits.open_files,
            "uid": limits.uid,
            "netns": limits.netns,
            "arena_fd": arena_fd,
            "arena_size": limits.arena_mb << 20,
        }
        import json

        root = str(Path(__file__).resolve().parents[1])
        env = dict(WORKER_ENV, PYTHONPATH=root)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {root!r}); "
                 "from sandbox.worker import main; main()", json.dumps(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                pass_fds=(to_r, from_w, arena_fd),
                env=env,
                cwd="/",
            )
        finally:
            os.close(to_r)
            os.close(from_w)
            os.close(arena_fd)
        self._to_worker, self._from_worker = to_w, from_r
        self._loaded = set()
        try:
            ready = await asyncio.wait_for(asyncio.to_thread(protocol.read_message, from_r), limits.start_timeout)
        except (asyncio.TimeoutError, protocol.PipeClosed, ValueError) as exc:
            self._kill()
            raise SandboxError(f"the sandbox worker did not start: {exc or 'timed out'}") from None
        if not ready.get("ok"):
            self._kill()
            raise SandboxError(f"the sandbox worker did not start: {ready.get('message')}")
        self.layers = [Layer(d["name"], d["applied"], d["detail"]) for d in ready["layers"]]
        for layer in self.layers:
            if not layer.applied:
                log.warning("sandbox worker %d: layer %s not applied: %s", self.pid, layer.name, layer.detail)
        log.info("sandbox worker %d ready: %s", self.pid, ", ".join(l.name for l in self.layers if l.applied))

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
        for fd in (self._to_worker, self._from_worker):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._to_worker = self._from_worker = None
        if self._arena is not None:
            self._arena.close()
            self._arena = None

    async def close(self) -> None:
        async with self._lock:
            self._kill()
            self.proc = None

    # --- requests ----------------------------------------------------------------------

    async def load(self, source: str, name: str) -> str:
        """Check and load a module; its sha256. PolicyError with every problem if refused."""
        problems = check_source(source, name)
        if problems:
            raise PolicyError(problems)
        digest = hashlib.sha256(source.encode()).hexdigest()
        self._sources[digest] = (source, name)
        async with self._lock:
            await self._ensure(digest)
        return digest

    async def _ensure(self, digest: str) -> CallOutcome | None:
        """A live worker with this module loaded; an outcome if loading broke a rule."""
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.restarts += 1
                self._kill()
            await self._spawn()
        if digest in self._loaded:
            return None
        source, name = self._sources[digest]
        outcome = await self._request({"op": "load", "source": source, "name": name})
        if outcome.ok:
            self._loaded.add(digest)
            return None
        return outcome

    async def call(
        self,
        digest: str,
        entry: str,
        *,
        window: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
        results: Mapping[str, Any] | None = None,
        params: Any = None,
        state: Any = None,
    ) -> CallOutcome:
        if digest not in self._sources:
            raise SandboxError(f"module {digest[:12]} was never loaded")
        request: dict[str, Any] = {
            "op": "call", "hash": digest, "entry": entry, "params": params, "state": state,
            "max_bytes": self.limits.max_result_bytes,
        }
        if results is not None:
            request["results"] = dict(results)
        async with self._lock:
            broken = await self._ensure(digest)
            if broken is not None:
                return broken
            if window is not None:
                arrays = {k: (np.asarray(t, np.float64), np.asarray(v, np.float64)) for k, (t, v) in window.items()}
                placed = self._place(arrays)
                if placed is not None:
                    request["arena"] = placed
                else:  # too big for the arena: raw bytes over the pipe
                    request["window"] = {k: [t, v] for k, (t, v) in arrays.items()}
            return await self._request(request)

    def _place(self, arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, list[int]] | None:
        """Copy the window into the shared arena; {name: [offset_t, offset_v, n]}."""
        arena = self._arena
        need = sum(t.nbytes + v.nbytes for t, v in arrays.values())
        if arena is None or need > len(arena):
            return None
        placed, offset = {}, 0
        for name, (t, v) in arrays.items():
            n = len(t)
            np.frombuffer(arena, np.float64, n, offset)[:] = t
            np.frombuffer(arena, np.float64, n, offset + t.nbytes)[:] = v
            placed[name] = [offset, offset + t.nbytes, n]
            offset += t.nbytes + v.nbytes
        return placed

    async def _request(self, request: dict[str, Any]) -> CallOutcome:
        assert self._to_worker is not None and self._from_worker is not None and self.proc is not None
        started = time.monotonic()
        proc = self.proc
        to_worker, from_worker = self._to_worker, self._from_worker

        def exchange() -> dict[str, Any]:
            protocol.write_message(to_worker, request)
            return protocol.read_message(from_worker)

        job = asyncio.ensure_future(asyncio.to_thread(exchange))
        try:
            reply = await asyncio.wait_for(asyncio.shield(job), self.limits.call_timeout)
        except asyncio.TimeoutError:
            self._kill()  # unblocks the thread: the pipes close under it
            await asyncio.gather(job, return_exceptions=True)
            self.proc = None
            return CallOutcome(False, rule=Rule.TIMEOUT, elapsed=time.monotonic() - started,
                               message=f"the call took longer than {self.limits.call_timeout:g} s; the worker was killed")
        except (protocol.PipeClosed, BrokenPipeError, OSError, ValueError) as exc:
            code = proc.wait()
            self._kill()
            self.proc = None
            return self._death(code, exc, time.monotonic() - started)
        elapsed = time.monotonic() - started
        if not reply.get("ok"):
            return CallOutcome(False, rule=Rule(reply.get("rule", Rule.ERROR.value)), message=reply.get("message"),
                               line=reply.get("line"), elapsed=elapsed)
        return CallOutcome(True, value=reply.get("value"), flags=list(reply.get("flags") or []), elapsed=elapsed)

    @staticmethod
    def _death(code: int, exc: BaseException, elapsed: float) -> CallOutcome:
        if code < 0:
            sig = signal.Signals(-code)
            rule = Rule.TIMEOUT if sig is signal.SIGXCPU else Rule.CRASH
            message = f"the worker died of {sig.name}"
            if sig is signal.SIGSYS:
                message += " (a forbidden system call)"
        else:
            rule, message = Rule.CRASH, f"the worker exited with status {code}"
        return CallOutcome(False, rule=rule, message=message, elapsed=elapsed)
