"""Runs the server's tasks: cut the window, run the on-board method, keep the result.

Each (assignment, iteration) runs once however often the server sends it (it resends
to a vehicle that reconnects). The numeric work runs in a thread so the link stays
responsive; the window wait honours the task's deadline, and a failure of any kind
becomes an error result that says why, never a dead agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from oodida.agent import metrics
from oodida.agent.methods import NO_MODULE_HASH, NoModule, OnBoardSteps, Pinned
from oodida.agent.modules import ModuleRunner
from oodida.agent.outbox import Key, Outbox
from oodida.agent.store import SignalStore, WindowError
from oodida.agent.versions import ModuleVersions
from oodida.core.errors import OodidaError
from oodida.core.signing import Trust
from oodida.hw.dbc import SignalDecoder
from oodida.hw.errors import UnknownSignalError
from oodida.wire.messages import BUILTIN_CODE_HASH, Result, Task

log = logging.getLogger(__name__)

__all__ = ["BUILTIN_CODE_HASH", "NO_MODULE_HASH", "NoModule", "SignalResolver", "TaskRunner"]  # the first three
# moved to agent.methods and stay importable from here


class SignalResolver:
    """Maps the names analysts use (bare or `MESSAGE.SIGNAL`) to recorded signals."""

    def __init__(self, decoders: list[SignalDecoder], store: SignalStore) -> None:
        self.decoders = decoders
        self.store = store

    def resolve(self, names: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in names:
            out[name] = self._one(name)
        return out

    def _one(self, name: str) -> str:
        if name in self.store:
            return name
        problems = []
        for decoder in self.decoders:
            try:
                canonical = decoder.resolve(name)
            except UnknownSignalError as exc:
                problems.append(exc.reason)
                continue
            if canonical in self.store:
                return canonical
            problems.append(f"{canonical} is in the DBC but this vehicle does not record it")
        raise WindowError(f"signal {name!r} is not available on this vehicle: " + "; ".join(problems))

    def units(self, names: dict[str, str]) -> dict[str, str]:
        """The DBC unit of each resolved signal (keyed as the task named it); a signal
        whose DBC gives no unit is left out."""
        out: dict[str, str] = {}
        for asked, canonical in names.items():
            for decoder in self.decoders:
                unit = decoder.unit(canonical)
                if unit:
                    out[asked] = unit[:32]
                    break
        return out


class TaskRunner:
    def __init__(
        self,
        vehicle: str,
        store: SignalStore,
        resolver: SignalResolver,
        outbox: Outbox,
        send: Callable[[Result], Coroutine[Any, Any, None]],
        modules: ModuleRunner | None = None,
        trust: Trust | None = None,
    ) -> None:
        self.modules = modules or ModuleRunner()
        self.versions = ModuleVersions(self.modules, trust)
        self.steps = OnBoardSteps(self.modules, self.versions)  # built-in or sandboxed, per task
        self.vehicle = vehicle
        self.store = store
        self.resolver = resolver
        self.outbox = outbox
        self.send = send
        self.running: dict[Key, asyncio.Task[None]] = {}
        self._done: dict[Key, None] = {}  # recently finished keys, oldest first
        self._resends: set[asyncio.Task[None]] = set()

    def submit(self, task: Task) -> None:
        key = (task.assignment, task.iteration)
        if key in self.outbox:
            self._resend(key)
            return
        if key in self.running or key in self._done:
            log.debug("task %s already running or done; ignored", key)
            return
        # the module version is fixed now, by the loads that arrived before this task
        pinned = self.steps.pin(task)
        job = asyncio.create_task(self._run(task, pinned), name=f"task-{key[0]}-{key[1]}")
        self.running[key] = job
        job.add_done_callback(lambda _: self.running.pop(key, None))

    def _resend(self, key: Key) -> None:
        """A task whose result waits in the outbox (a server that restarted and resumed
        the iteration asks again) gets that result, not a second computation: the
        window has moved since, and the answer must be the one computed first."""
        result = self.outbox.get(key)
        if result is None:
            return
        log.info("task %d/%d: its result waits in the outbox; sent again, not computed again", *key)
        job = asyncio.create_task(self.send(result), name=f"resend-{key[0]}-{key[1]}")
        self._resends.add(job)
        job.add_done_callback(self._resends.discard)

    def cancel(self, assignment: int) -> None:
        for (a, i), job in list(self.running.items()):
            if a == assignment:
                log.info("cancelling assignment %d iteration %d", a, i)
                job.cancel()

    async def stop(self) -> None:
        self.modules.closing()
        jobs: list[asyncio.Future[Any]] = [*self.running.values(), *self.steps.calls]
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        await self.modules.close()

    async def _run(self, task: Task, pinned: Pinned) -> None:
        started = time.monotonic()
        step = await self.steps.bind(task, pinned)
        common: dict[str, Any] = dict(
            assignment=task.assignment, iteration=task.iteration, vehicle=self.vehicle, code_hash=step.code_hash
        )
        try:
            step.ready()  # a module not loaded here fails now, not after a window's wait
            names = self.resolver.resolve(task.signals)
            window = await self.store.window(names, task.window, timeout=task.deadline)
            value, flags = await step.on_board(window, task.params, task.state)
            result = Result(
                **common,
                ok=True,
                value=value,
                samples=window.samples,
                t_start=window.t_start,
                t_end=window.t_end,
                elapsed=time.monotonic() - started,
                flags=[f[:256] for f in flags[:64]],
                units=self.resolver.units(names),
            )
        except asyncio.CancelledError:
            log.info("task %d/%d cancelled", task.assignment, task.iteration)
            raise
        except OodidaError as exc:  # incl. a sandbox Violation, whose text names the rule
            result = self._failure(common, str(exc), started)
        except Exception as exc:  # a method's bug on odd data: report it, keep serving
            log.exception("task %d/%d failed", task.assignment, task.iteration)
            result = self._failure(common, f"{type(exc).__name__}: {exc}", started)
        key = (task.assignment, task.iteration)
        self._done[key] = None
        while len(self._done) > 1000:
            self._done.pop(next(iter(self._done)))
        # on disk before it is sent; the commit's fsync waits in a thread, not on the loop
        # (many simulated agents share one loop in the benchmarks)
        await asyncio.to_thread(self.outbox.put, result)
        metrics.result_computed(result)
        log.info(
            "assignment %d iteration %d: %s in %.3f s",
            task.assignment,
            task.iteration,
            "ok" if result.ok else f"error: {result.error}",
            result.elapsed,
        )
        await self.send(result)

    @staticmethod
    def _failure(common: dict[str, Any], reason: str, started: float) -> Result:
        return Result(
            **common,
            ok=False,
            error=reason[:4000],
            elapsed=time.monotonic() - started,
        )
