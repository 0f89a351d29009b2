"""The owner's side of the zygote (zygote.py): start it, ask it for workers, learn how
they ended, and start a new one when it dies.

One `Zygote` per supervisor owner (the agent's or the server's `SandboxHost`),
shared by all its supervisors. Its methods must run on one event loop, the one that
started it (the control socket is watched by that loop; the zygote's parent-death
signal follows the thread that spawned it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from oodida.sandbox.errors import SandboxError
from oodida.sandbox.hardening import Layer

log = logging.getLogger(__name__)

# The folder that holds the oodida package (a checkout, where oodida/sandbox links to
# sandbox/, or site-packages): first on the zygote's path, which starts without site.
ROOT = str(Path(sys.modules["oodida"].__file__ or ".").resolve().parents[1])
# No secrets, no paths, nothing from the caller's environment: only what keeps numeric
# libraries single-threaded (a worker may not start threads once confined).
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
BOOT = (
    "import sys, json; c = json.loads(sys.argv[1]); sys.path[:0] = c['path']; "
    "from oodida.sandbox.zygote import main; main(c)"
)
MAX_PACKET = 64 * 1024


def import_path() -> list[str]:
    return [ROOT] + [p for p in sys.path if p and os.path.isabs(p) and p != ROOT and os.path.isdir(p)]


class _Template:
    """One zygote process (one generation): its socket, its workers' exits."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.sock = sock
        self.alive = True
        self.layers: list[Layer] = []
        self.exits: dict[int, int | None] = {}
        self.pending: dict[int, asyncio.Future[tuple[int, int]]] = {}
        self.ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.on_death: Any = None
        self._loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._on_message)

    def _on_message(self) -> None:
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_PACKET, 2)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data:
                for fd in fds:
                    os.close(fd)
                self._died("its control socket closed")
                return
            try:
                message = json.loads(data)
            except ValueError:
                message = None
            if type(message) is not dict:
                for fd in fds:
                    os.close(fd)
                self.proc.kill()
                self._died("it sent a message that is not ours")
                return
            self._dispatch(message, list(fds))

    def _dispatch(self, message: dict[str, Any], fds: list[int]) -> None:
        if message.get("ready"):
            if not self.ready.done():
                self.ready.set_result(message)
        elif "exit" in message:
            code = message.get("code")
            self.exits[int(message["exit"])] = code if type(code) is int else None
        elif "id" in message:
            future = self.pending.pop(message["id"], None)
            pid = message.get("pid")
            if future is not None and not future.done():
                if type(pid) is int and len(fds) == 1:
                    future.set_result((pid, fds[0]))
                    return
                future.set_exception(SandboxError(f"the zygote could not fork a worker: {message.get('error')}"))
        for fd in fds:
            os.close(fd)

    def _died(self, why: str) -> None:
        if not self.alive:
            return
        self.alive = False
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        error = SandboxError(f"the sandbox zygote (pid {self.pid}) died: {why}")
        for future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()
        if not self.ready.done():
            self.ready.set_exception(error)
        if self.on_death is not None:
            self.on_death(self, why)

    def close(self) -> None:
        self._died("closed")
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


class ForkedProcess:
    """A worker forked by the zygote, as the supervisor sees it (Popen's poll,
    returncode and send_signal): killed through its pidfd, reaped by the zygote."""

    def __init__(self, template: _Template, pid: int, pidfd: int) -> None:
        self.template = template
        self.pid = pid
        self.pidfd = pidfd
        self.returncode: int | None = None
        self.lost = False  # it ended with its zygote, which could not say how

    def _gone(self) -> bool:
        if self.pidfd < 0:
            return True
        readable, _, _ = select.select([self.pidfd], [], [], 0)
        return bool(readable)

    def exited(self) -> bool:
        """Whether the process is gone (it may not be reaped yet: `poll` then says None)."""
        return self.returncode is not None or self._gone()

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        if self.pid not in self.template.exits and self.template.alive and self._gone():
            self.template._on_message()  # its exit may be waiting on the socket: read it now
        if self.pid in self.template.exits:
            code = self.template.exits.pop(self.pid)
            self.lost = code is None
            self.returncode = -signal.SIGKILL if code is None else code
        elif not self.template.alive and self._gone():
            self.lost = True
            self.returncode = -signal.SIGKILL
        if self.returncode is not None:
            self._close_pidfd()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None and self.pidfd >= 0:
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self.pidfd, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _close_pidfd(self) -> None:
        if self.pidfd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = -1


class Zygote:
    """The owner's zygote: started on first use, replaced (logged) when it dies."""

    def __init__(
        self, *, netns: bool = True, start_timeout: float = 30.0, max_workers: int = 16, seccomp: bool = True
    ) -> None:
        self.netns = netns
        self.seccomp = seccomp
        self.start_timeout = start_timeout
        self.max_workers = max_workers
        self.started = 0  # zygotes exec'd so far (the first, and every replacement)
        self._template: _Template | None = None
        self._starting: asyncio.Task[_Template] | None = None
        self._next_id = 0
        self._closed = False
        self._reaping: set[asyncio.Task[None]] = set()

    @property
    def pid(self) -> int | None:
        t = self._template
        return t.pid if t is not None and t.alive else None

    @property
    def layers(self) -> list[Layer]:
        return self._template.layers if self._template is not None else []

    async def start(self) -> list[Layer]:
        return (await self._live()).layers

    async def _live(self) -> _Template:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        t = self._template
        if t is not None and t.alive:
            return t
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._exec())
        starting = self._starting
        try:
            t = await asyncio.shield(starting)
        finally:
            if self._starting is starting and starting.done():
                self._starting = None
        return t

    async def _exec(self) -> _Template:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        config = {"ctl": theirs.fileno(), "netns": self.netns, "seccomp": self.seccomp, "ppid": os.getpid(),
                  "path": import_path(),
                  "open_files": 4 * self.max_workers + 64}
        try:
            # Synchronously, on the loop's thread: the zygote's parent-death signal
            # follows the thread that started it.
            proc = subprocess.Popen(  # noqa: ASYNC220
                self._command(config),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),), close_fds=True, env=dict(WORKER_ENV), cwd="/", start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise SandboxError(f"cannot start the sandbox zygote: {exc}") from None
        finally:
            theirs.close()
        template = _Template(proc, ours)
        try:
            async with asyncio.timeout(self.start_timeout):
                ready = await template.ready
            if ready.get("ok") is not True or type(ready.get("layers")) is not list:
                raise SandboxError(str(ready.get("message") or "no ready message"))
            template.layers = [Layer(str(d["name"]), d["applied"] is True, str(d["detail"])) for d in ready["layers"]]
        except BaseException as exc:
            template.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            why = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            raise SandboxError(f"the sandbox zygote did not start ({why})") from None
        template.on_death = self._on_death
        self.started += 1
        self._template = template
        log.info("sandbox zygote %d ready: workers fork from it", template.pid)
        return template

    def _command(self, config: dict[str, Any]) -> list[str]:
        return [sys.executable, "-I", "-S", "-B", "-X", "utf8", "-c", BOOT, json.dumps(config)]

    def _on_death(self, template: _Template, why: str) -> None:
        if self._closed or template is not self._template:
            return
        log.warning("sandbox zygote %d died (%s): a new one starts; its workers are replaced on their next call",
                    template.pid, why)
        self._reap(template)  # in the background; its successor starts now
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._exec())
            self._starting.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _reap(self, template: _Template) -> None:
        async def wait() -> None:
            for _ in range(500):
                if template.proc.poll() is not None:
                    return
                await asyncio.sleep(0.01)
            template.close()

        task = asyncio.ensure_future(wait())
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    async def fork(self, config: dict[str, Any], fds: list[int]) -> ForkedProcess:
        """A fresh worker with `config`, holding `fds` (request read end, reply write
        end, stderr write end, arena). The caller keeps (and closes) its copies."""
        for attempt in (0, 1):
            template = await self._live()
            self._next_id += 1
            ident = self._next_id
            future: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
            template.pending[ident] = future
            try:
                socket.send_fds(template.sock, [json.dumps({"id": ident, "config": config}).encode()], fds)
            except OSError as exc:
                template.pending.pop(ident, None)
                template._died(f"a fork request failed ({exc})")
                if attempt:
                    raise SandboxError(f"the sandbox zygote would not take a request: {exc}") from None
                continue
            try:
                async with asyncio.timeout(self.start_timeout):
                    pid, pidfd = await future
            except SandboxError:
                if attempt or template.alive:
                    raise
                continue  # it died under us: once more with its successor
            return ForkedProcess(template, pid, pidfd)
        raise SandboxError("the sandbox zygote would not fork")  # pragma: no cover

    def kill(self) -> None:
        """SIGKILL the running zygote (tests: its death must be survived)."""
        t = self._template
        if t is not None and t.proc.poll() is None:
            t.proc.send_signal(signal.SIGKILL)

    async def close(self) -> None:
        self._closed = True
        if self._starting is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._starting
            self._starting = None
        if self._template is not None:
            self._template.close()
            self._template = None
        if self._reaping:
            await asyncio.gather(*list(self._reaping), return_exceptions=True)
