"""A sandbox worker per assignment, forked from one zygote per process.

The agent (on-board modules) and the server (off-board modules) each hold one host.
Every assignment gets its own `Supervisor`, and so its own worker process: what one
analyst's module can observe (its heap, freed memory, globals) holds only what its
own assignment gave it or computed. Calls of different assignments run side by side
(each supervisor serialises only its own). Versions of one assignment's module are
loaded into its running worker, so replacing a module never starts a process.

One spare worker, forked ahead of need and never used by anyone, waits for the next
assignment (or replacement) that needs a worker, so that request only loads its
module (supervisor.Spares). `SandboxLimits.max_workers` bounds the assignments'
live workers (the spare is one more). An assignment that needs one
when all are taken evicts the least recently used idle worker of another (logged;
that assignment's module is loaded again at its next call), or waits for one to be
idle. `release(assignment)` reaps an assignment that has finished.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from oodida.sandbox.check import MAX_REASON, summarise
from oodida.sandbox.errors import PolicyError, Rule, Violation
from oodida.sandbox.spawner import Zygote
from oodida.sandbox.supervisor import CallOutcome, SandboxLimits, Spares, Supervisor, run_entry

log = logging.getLogger(__name__)

T = TypeVar("T")  # what a request to an assignment's worker returns


class SandboxHost:
    # An observer of every call's outcome (the server's and agent's metrics): "ok", or
    # the `Rule` value it broke ("timeout", "crash", "memory", "error", ...).
    on_event: Callable[[str], None] | None = None

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.max_workers = max(1, self.limits.max_workers)
        self.zygote = self._new_zygote()
        self.spares = Spares(self.zygote, self.limits)
        self.evictions = 0
        self._supervisors: collections.OrderedDict[Hashable, Supervisor] = collections.OrderedDict()  # LRU first
        self._holding: set[Hashable] = set()  # assignments that own a worker slot now
        self._busy: collections.Counter[Hashable] = collections.Counter()
        self._used: dict[Hashable, float] = {}  # assignment -> when its last request ended
        self._freed: asyncio.Condition | None = None
        self._retired = {"started": 0, "restarts": 0, "recycles": 0}
        self._closing = False

    def _new_zygote(self) -> Zygote:
        lim = self.limits
        return Zygote(
            netns=lim.netns, start_timeout=lim.start_timeout, seccomp=lim.seccomp, max_workers=self.max_workers
        )

    def supervisor(self, assignment: Hashable) -> Supervisor:
        """The assignment's supervisor (made on first use; no worker until a request)."""
        sup = self._supervisors.get(assignment)
        if sup is None:
            if self._closing:
                raise Violation(Rule.ERROR, "the sandbox is shutting down")
            sup = Supervisor(self.limits, zygote=self.zygote, label=f"assignment {assignment}", spares=self.spares)
            self._supervisors[assignment] = sup
        return sup

    @property
    def workers(self) -> int:
        """Assignments holding a worker (running, starting or being replaced)."""
        return len(self._holding)

    async def _admit(self, assignment: Hashable) -> Supervisor:
        """The assignment's supervisor, holding a worker slot: evicts another's idle
        worker, or waits for one, when `max_workers` are taken."""
        sup = self.supervisor(assignment)
        self._supervisors.move_to_end(assignment)  # least recently used first
        await self._reap_idle(assignment)
        if assignment in self._holding:
            return sup
        if self._freed is None:
            self._freed = asyncio.Condition()
        while len(self._holding) >= self.max_workers:
            victim = next((k for k in self._supervisors if k in self._holding and not self._busy[k]), None)
            if victim is not None:
                self._holding.discard(victim)
                self.evictions += 1
                log.info("sandbox: the worker of assignment %s is evicted (max_workers %d reached for assignment "
                         "%s); its module is loaded again at its next call", victim, self.max_workers, assignment)
                await self._supervisors[victim].evict()
                continue
            async with self._freed:
                await self._freed.wait()
            if assignment in self._holding:
                return sup
        self._holding.add(assignment)
        return sup

    async def _reap_idle(self, keep: Hashable) -> None:
        """Workers unused for `idle_seconds` go (the agent is not told when an
        assignment ends; the server is, and calls `release`)."""
        horizon = time.monotonic() - self.limits.idle_seconds
        for key in [k for k in self._holding if k != keep and not self._busy[k] and self._used.get(k, 0) < horizon]:
            self._holding.discard(key)
            log.info("sandbox: the worker of assignment %s was idle for %.0f s: reaped", key, self.limits.idle_seconds)
            await self._supervisors[key].evict()

    async def _request(self, assignment: Hashable, work: Callable[[Supervisor], Awaitable[T]]) -> T:
        self._busy[assignment] += 1
        try:
            sup = await self._admit(assignment)
            return await work(sup)
        finally:
            if not self._closing:
                self.spares.fill()  # after the answer, not competing with it
            self._used[assignment] = time.monotonic()
            self._busy[assignment] -= 1
            if not self._busy[assignment]:
                del self._busy[assignment]
                if self._freed is not None:
                    async with self._freed:
                        self._freed.notify_all()

    async def load(self, source: str, name: str, *, assignment: Hashable) -> tuple[str, frozenset[str]]:
        """Compile and load a version into the assignment's worker: its hash and the
        entry points it defines. `Violation` naming the rule when the policy refuses
        it or its top level fails."""

        async def work(sup: Supervisor) -> tuple[str, frozenset[str]]:
            try:
                digest = await sup.load(source, name)
            except PolicyError as exc:  # every problem, one a line, cut to fit an acknowledgement ("and N more")
                first, *rest = (str(p) for p in exc.problems)
                raise Violation(exc.problems[0].rule, summarise(first, rest, MAX_REASON - 200)) from None
            failure = sup.failure(digest)
            if failure is not None:
                raise Violation(failure.rule or Rule.ERROR, failure.message or "its top level failed", failure.line)
            return digest, sup.entries(digest)

        return await self._request(assignment, work)

    async def run(self, source: str, name: str, entry: str, *, assignment: Hashable, **arguments: Any) -> CallOutcome:
        """Load if need be and call an entry point in the assignment's worker;
        `Violation` naming the rule broken."""
        try:
            outcome = await self._request(assignment, lambda sup: run_entry(sup, source, name, entry, **arguments))
        except Violation as exc:
            if self.on_event is not None:
                self.on_event(exc.rule.value)
            raise
        if self.on_event is not None:
            self.on_event("ok")
        return outcome

    async def release(self, assignment: Hashable) -> None:
        """The assignment is over: its worker is reaped, its versions forgotten."""
        sup = self._supervisors.pop(assignment, None)
        self._holding.discard(assignment)
        self._used.pop(assignment, None)
        if sup is not None:
            self._keep_counts(sup)
            await sup.close()
            if self._freed is not None:
                async with self._freed:
                    self._freed.notify_all()

    def _keep_counts(self, sup: Supervisor) -> None:
        self._retired["started"] += sup.spawned
        self._retired["restarts"] += sup.restarts
        self._retired["recycles"] += sup.recycles

    def stats(self) -> dict[str, Any] | None:
        """The sandbox as operators see it: the zygote's pid, workers started, restarts,
        recycles (over all assignments, past and present), versions held now; None
        before the first module."""
        if not self._supervisors and not any(self._retired.values()):
            return None
        sups = list(self._supervisors.values())
        return {
            "pid": self.zygote.pid,
            "started": self._retired["started"] + sum(s.spawned for s in sups),
            "restarts": self._retired["restarts"] + sum(s.restarts for s in sups),
            "recycles": self._retired["recycles"] + sum(s.recycles for s in sups),
            "modules": sum(s.modules for s in sups),
        }

    def closing(self) -> None:
        """Shutting down: a call cut short now must not start a new worker."""
        self._closing = True
        for sup in self._supervisors.values():
            sup.closing()

    async def close(self) -> None:
        self._closing = True
        sups = list(self._supervisors.values())
        self._supervisors.clear()
        self._holding.clear()
        for sup in sups:
            self._keep_counts(sup)
        with contextlib.suppress(Exception):
            await asyncio.gather(*(s.close() for s in sups), return_exceptions=True)
        await self.spares.close()
        await self.zygote.close()
        self.zygote = self._new_zygote()  # a host may be used again after close()
        self.spares = Spares(self.zygote, self.limits)
        self._closing = False
