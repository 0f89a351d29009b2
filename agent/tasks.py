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
from collections.abc import Awaitable, Callable
from typing import Any

from oodida.agent import metrics
from oodida.agent.modules import ModuleRunner
from oodida.agent.outbox import Key, Outbox
from oodida.agent.store import SignalStore, WindowError
from oodida.agent.versions import ModuleVersions
from oodida.analytics import registry
from oodida.analytics.arrays import from_wire, to_wire
from oodida.core.errors import OodidaError
from oodida.core.signing import Trust
from oodida.hw.dbc import SignalDecoder
from oodida.hw.errors import UnknownSignalError
from oodida.wire.messages import Result, Task

log = logging.getLogger(__name__)

BUILTIN_CODE_HASH = "builtin:0.1"
NO_MODULE_HASH = "none"  # a module task on a vehicle that holds no version of the module


class NoModule(OodidaError):
    """A module task reached a vehicle that holds no version of the module."""


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
        send: Callable[[Result], Awaitable[None]],
        modules: ModuleRunner | None = None,
        trust: Trust | None = None,
    ) -> None:
        self.modules = modules or ModuleRunner()
        self.versions = ModuleVersions(self.modules, trust)
        self.vehicle = vehicle
        self.store = store
        self.resolver = resolver
        self.outbox = outbox
        self.send = send
        self.running: dict[Key, asyncio.Task[None]] = {}
        self._calls: set[asyncio.Future[tuple[Any, list[str]]]] = set()  # sandbox calls in flight
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
        pending = self.versions.pending(task.assignment) if task.module_hash is not None else None
        job = asyncio.create_task(self._run(task, pending), name=f"task-{key[0]}-{key[1]}")
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
        jobs = [*self.running.values(), *self._calls]
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        await self.modules.close()

    async def _call_to_the_end(self, call: Awaitable[tuple[Any, list[str]]]) -> tuple[Any, list[str]]:
        """A sandbox call that a cancelled task (`CancelTask`: the iteration closed
        without this vehicle) leaves running to its end, its answer dropped: stopping
        a worker mid-call means killing it, and a fresh one costs far more than the
        rest of a call, which its time budget bounds anyway."""
        job = asyncio.ensure_future(call)
        self._calls.add(job)
        job.add_done_callback(self._calls.discard)
        job.add_done_callback(lambda j: j.cancelled() or j.exception())  # retrieved, if nobody waits
        return await asyncio.shield(job)

    async def _run(self, task: Task, pending: asyncio.Task | None) -> None:
        started = time.monotonic()
        version = None
        if task.module_hash is not None:
            version = await self.versions.bind(task.assignment, pending)
        if version is not None:
            code_hash = version.code_hash
        else:
            code_hash = BUILTIN_CODE_HASH if task.module_hash is None else NO_MODULE_HASH
        common = dict(assignment=task.assignment, iteration=task.iteration, vehicle=self.vehicle, code_hash=code_hash)
        try:
            if task.module_hash is not None and version is None:
                refused = self.versions.refused.get(task.assignment)
                raise NoModule(
                    f"no version of assignment {task.assignment}'s module is loaded on this vehicle"
                    f" (the server asked for {task.module_hash[:12]})" + (f"; {refused}" if refused else "")
                )
            names = self.resolver.resolve(task.signals)
            window = await self.store.window(names, task.window, timeout=task.deadline)
            state = from_wire(task.state)
            flags: list[str] = []
            if version is not None:
                value, flags = await self._call_to_the_end(
                    self.modules.on_board(version.module, window, task.params, state, assignment=task.assignment)
                )
            else:
                value = await asyncio.to_thread(
                    registry.run_on_board, task.methods, window.series, task.params, state
                )
            result = Result(
                **common,
                ok=True,
                value=to_wire(value),
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
    def _failure(common: dict, reason: str, started: float) -> Result:
        return Result(
            **common,
            ok=False,
            error=reason[:4000],
            elapsed=time.monotonic() - started,
        )
