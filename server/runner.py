"""Drives one assignment, iteration by iteration.

For each iteration: put in force the module versions deployed since the last one
(running a new version's migrate(old_state) on the state), send the task (with the
previous iteration's fleet state) to the selected vehicles, wait for quorum or the
deadline, take the majority version's answers, run the off-board step on their
successful ones, store the outcome and tell the subscribers. A vehicle that is gone
never stalls the fleet beyond the deadline.

What a restarted server needs to go on is stored as the runner goes: an iteration is
opened together with its task and the versions (`Store.begin_iteration`), results as
they arrive, the outcome when it closes. A server that stops suspends its runners
(the assignment stays `running`); server/resume.py rebuilds them in the next process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from oodida.analytics.arrays import from_wire, to_wire
from oodida.sandbox.supervisor import source_hash
from oodida.server import metrics
from oodida.server.iteration import Iteration, Status, quorum_count
from oodida.server.methods import OffBoard, off_board_step
from oodida.server.modules import OffBoardRunner
from oodida.server.storage import Store
from oodida.server.versions import AssignmentVersions, compact_map
from oodida.wire.messages import AssignmentSpec, LoadModule, Message, ModuleAck, Result, Task
from oodida.wire.states import ASSIGNMENT, AssignmentEvent, AssignmentState

log = logging.getLogger(__name__)


class Fleet(Protocol):
    """What a runner needs of the server: send to a vehicle, announce news."""

    async def send_to(self, vehicle: str, message: Message) -> bool: ...

    async def send_many(self, messages: Mapping[str, Message]) -> list[str]: ...

    async def cancel_tasks(self, vehicles: list[str], assignment: int) -> None: ...

    def publish(self, assignment: int, event: tuple[str, Any]) -> None: ...


class AssignmentRunner:
    def __init__(
        self,
        fleet: Fleet,
        store: Store,
        assignment: int,
        spec: AssignmentSpec,
        vehicles: list[str],
        modules: OffBoardRunner | None = None,
    ):
        self.modules = modules
        self.fleet = fleet
        self.store = store
        self.id = assignment
        self.spec = spec
        self.vehicles = vehicles
        self.selected = frozenset(vehicles)  # for membership: a list costs O(fleet) per result
        self.current: Iteration | None = None
        self.current_task: dict[str, Task] = {}
        self.current_off_board: str | None = None  # the off-board version the open iteration keeps
        self._wake = asyncio.Event()
        self._cancelled = False
        self.task: asyncio.Task[None] | None = None
        self.state: Any = None
        self.completed = 0
        self.versions = AssignmentVersions(vehicles)
        self._acks: list[tuple[int, str, str, str, bool, str | None]] = []  # not yet stored
        if spec.on_board_module is not None:
            self.versions.deploy_on_board(source_hash(spec.on_board_module.source), spec.on_board_module, None)
        if spec.off_board_module is not None:
            module = spec.off_board_module
            self.versions.deploy_off_board(source_hash(module.source), module, initial=True)
        self.versions.changed = self._save_versions
        # where run() starts; server/resume.py moves these for a runner it rebuilds
        self.next_number = 1
        self.reopen: Iteration | None = None  # an iteration to reopen before the next one
        self._suspending = False
        self._switching: dict[str, str] = {}  # versions coming into force at this boundary

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self.run(), name=f"assignment-{self.id}")
        return self.task

    def cancel(self) -> None:
        self._cancelled = True
        self._wake.set()

    def suspend(self) -> None:
        """The server is stopping: end the task but not the assignment, which stays
        `running` in the store for the next server process to resume."""
        self._suspending = True
        if self.task is not None:
            self.task.cancel()

    def restore(self, *, closed: int, state: Any, versions: AssignmentVersions | None = None) -> None:
        """Where a runner rebuilt by server/resume.py goes on, before `start`: after
        `closed` iterations, from the fleet `state` the last one left, with the versions
        the previous process saved (None: the spec's), saved again as they change."""
        if versions is not None:
            self.versions = versions
            versions.changed = self._save_versions
        self.state = state
        self.completed = closed
        self.next_number = closed + 1

    def reopen_iteration(self, it: Iteration, tasks: Mapping[str, Task], *, state: Any, off_board: str | None) -> None:
        """Run `it`, the iteration open when the previous process stopped, before the
        next ones (server/resume.py, before `start`): `tasks` is what each vehicle was
        sent, `state` what its off-board step starts from, `off_board` the version it keeps."""
        self.current_task = dict(tasks)
        self.state = state
        self.current_off_board = off_board
        self.reopen = it

    def versions_json(self) -> str:
        """The versions as a restarted server must find them. A version whose switch
        is under way (its migrate running) is still the next one: the state on disk
        is the one from before it."""
        data = self.versions.snapshot()
        for side, code_hash in self._switching.items():
            key = "off_board_next" if side == "off_board" else "migrate_next"
            if data[key] is None:
                data[key] = code_hash
        return json.dumps(data)

    def _save_versions(self) -> None:
        self.store.save_versions(self.id, self.versions_json())

    def load_for(self, vehicle: str) -> LoadModule | None:
        """The on-board version a (re)connecting vehicle must load before its next task."""
        if vehicle not in self.selected:
            return None
        return self.versions.load_message(self.id, vehicle)

    def on_module_ack(self, vehicle: str, ack: ModuleAck) -> None:
        """Record a vehicle's answer to a version (stored with the others that arrive in
        the same pass of the event loop, in one transaction) and tell the deploy."""
        if not self._acks:
            asyncio.get_running_loop().call_soon(self._store_acks)
        self._acks.append((self.id, "on_board", ack.code_hash, vehicle, ack.ok, ack.error))
        self.versions.on_ack(vehicle, ack)

    def _store_acks(self) -> None:
        rows, self._acks = self._acks, []
        try:
            self.store.add_module_acks(rows)
        except Exception:  # the registry's history only; what runs where is in memory
            log.exception("assignment %d: cannot store %d acknowledgements", self.id, len(rows))

    def task_for(self, vehicle: str) -> Task | None:
        """The open iteration's task for a vehicle that (re)connects and has not answered."""
        if self.current is None or not self.current.waits_for(vehicle):
            return None
        return self.current_task.get(vehicle)

    def on_result(self, result: Result) -> bool:
        """A result for this assignment's open iteration; False if it is not one."""
        it = self.current
        if it is None or result.iteration != it.number:
            return False
        if it.add(result):
            if it.should_close(time.monotonic()):
                self._wake.set()
            return True
        return result.vehicle in it.answers  # a duplicate of an answer we hold

    async def run(self) -> None:
        spec = self.spec
        number = self.next_number - 1
        end: AssignmentEvent | None = AssignmentEvent.COMPLETE  # None: suspended, it resumes
        reason = None
        try:
            if self.reopen is None and number == 0:
                self._save_versions()  # before any iteration: a restart finds the versions of the submit
            loads = [(v, self.load_for(v)) for v in self.vehicles]
            await asyncio.gather(*(self.fleet.send_to(v, load) for v, load in loads if load is not None))
            if self.reopen is not None:
                it, self.reopen = self.reopen, None
                number = it.number
                await self._run_iteration(it, self.current_off_board)
            while not self._cancelled and (spec.iterations == 0 or number < spec.iterations):
                number += 1
                await self._iterate(number)
            if self._cancelled:
                end = AssignmentEvent.CANCEL
        except asyncio.CancelledError:
            if self._suspending:
                end = None
            else:
                end, reason = AssignmentEvent.INTERRUPT, "the server stopped while it ran"
            raise
        except Exception as exc:  # a bug here must end this assignment, not the server
            fatal = getattr(self.fleet, "database_failed", None)
            if fatal is not None and fatal(exc):
                end = None  # the server stops: the assignment resumes on a repaired database
            else:
                log.exception("assignment %d failed", self.id)
                end, reason = AssignmentEvent.FAIL, f"internal error: {exc}"
        finally:
            self.current = None
            final = None if end is None else ASSIGNMENT.next(AssignmentState.RUNNING, end)
            # over: its worker is reaped
            if self.modules is not None and final not in (None, AssignmentState.INTERRUPTED):
                await self.modules.release(self.id)
            if final is None:
                log.info("assignment %d suspended after %d iterations; the next server process resumes it",
                         self.id, self.completed)
            else:
                self.store.finish_assignment(self.id, final, reason)
                self.fleet.publish(self.id, ("end", final))
                log.info("assignment %d %s after %d iterations", self.id, final, self.completed)

    async def _switch_versions(self) -> None:
        """At an iteration boundary: the off-board version deployed since the last one
        comes into force, and a new version's migrate(old_state), if it defines one,
        turns the state into what it expects. A migrate that fails leaves the old
        version (off board) and the state as they were, and says why in the audit log."""
        v = self.versions
        for code_hash, side in ((v.off_board_next, "off_board"), (v.migrate_next, "on_board")):
            if code_hash is None:
                continue
            if side == "off_board":
                v.off_board_next = None
            else:
                v.migrate_next = None
            self._switching[side] = code_hash  # until the iteration that follows is stored
            module = v.sources[code_hash]
            try:
                if self.modules is not None and "migrate" in (
                    await self.modules.load(module.source, module.name, assignment=self.id)
                )[1]:
                    self.state = to_wire(await self.modules.migrate(module, from_wire(self.state), assignment=self.id))
                    self.store.audit("server", "migrate", self.id, f"{side} {code_hash} migrated the state")
            except Exception as exc:
                log.warning("assignment %d: migrate of %s failed: %s", self.id, code_hash[:12], exc)
                self.store.audit("server", "migrate failed", self.id, f"{side} {code_hash}: {exc}"[:4000])
                continue
            if side == "off_board":
                v.off_board = code_hash
                log.info("assignment %d: off-board version %s in force", self.id, code_hash[:12])

    def off_board_step(self, off_board_hash: str | None) -> OffBoard:
        """The off-board step of an iteration that keeps version `off_board_hash`
        (None: the assignment has no off-board module)."""
        module = None if off_board_hash is None else self.versions.sources[off_board_hash]
        return off_board_step(self.spec, module, self.modules, self.id)

    async def _off_board(self, answers: dict[str, Result], off_board_hash: str | None) -> Any:
        """The fleet result of one iteration (None when there is no off-board step);
        updates the state the vehicles get with the next task."""
        partials = {vehicle: result.value for vehicle, result in answers.items()}
        step = self.off_board_step(off_board_hash)
        fleet, self.state = await step.off_board(partials, self.spec.params, self.state)
        return fleet

    def make_task(self, number: int, code_hash: str | None, state: Any) -> Task:
        spec = self.spec
        return Task(
            assignment=self.id,
            iteration=number,
            signals=spec.signals,
            window=spec.window,
            methods=spec.methods,
            params=spec.params,
            deadline=spec.deadline,
            state=state,
            module_hash=code_hash,
        )

    def new_iteration(self, number: int) -> Iteration:
        """An open iteration of this assignment whose deadline is a full one from now."""
        return Iteration(
            assignment=self.id,
            number=number,
            selected=tuple(self.vehicles),
            quorum=quorum_count(self.spec.quorum, len(self.vehicles)),
            deadline_at=time.monotonic() + self.spec.deadline,
        )

    async def _iterate(self, number: int) -> None:
        await self._switch_versions()
        off_board_hash = self.versions.off_board  # the iteration keeps it, whatever is deployed meanwhile
        started_wall = time.time()
        it = self.new_iteration(number)
        tasks: dict[str | None, Task] = {}  # one per version asked for (usually one)
        hashes: dict[str, str | None] = {}
        for vehicle in self.vehicles:
            code_hash = hashes[vehicle] = self.versions.target.get(vehicle)
            if code_hash not in tasks:
                tasks[code_hash] = self.make_task(number, code_hash, self.state)
            self.current_task[vehicle] = tasks[code_hash]
        self._switching = {}  # the switch is done once this iteration is stored
        self.store.begin_iteration(
            self.id, number, started_wall, task_state=self.state, task_hashes=compact_map(hashes, self.vehicles),
            off_board_hash=off_board_hash, versions=self.versions_json(),
        )
        await self._run_iteration(it, off_board_hash)

    async def _run_iteration(self, it: Iteration, off_board_hash: str | None) -> None:
        """Send the open iteration's task to those that have not answered, wait for
        quorum or the deadline, close it, run the off-board step, store the outcome."""
        number = it.number
        started = time.monotonic()
        self._wake.clear()
        self.current = it
        self.current_off_board = off_board_hash
        waiting = it.waiting_for()  # all of them, but in a reopened iteration
        # each distinct task encoded once
        await self.fleet.send_many(
            self.current_task if len(waiting) == len(it.selected) else {v: self.current_task[v] for v in waiting}
        )
        while not self._cancelled and not it.should_close(time.monotonic()):
            remaining = it.deadline_at - time.monotonic()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(remaining, 0.0))
            except TimeoutError:
                pass
            self._wake.clear()
        outcome = it.close(time.monotonic(), cancelled=self._cancelled, newest_first=self.versions.newest_first)
        self.current = None
        self.current_task = {}
        if outcome.missing:
            await self.fleet.cancel_tasks(outcome.missing, self.id)
        fleet_value: Any = None
        status, reason = outcome.status, outcome.reason
        if outcome.ok and status is not Status.CANCELLED:
            try:
                fleet_value = await self._off_board(outcome.ok, off_board_hash)
            except Exception as exc:
                log.warning("assignment %d iteration %d: off-board step failed: %s", self.id, number, exc)
                status, reason = Status.FAILED, f"off-board step failed: {exc}; {reason}"
        self.store.close_iteration(
            self.id,
            number,
            status=status.value,
            missing=outcome.missing,
            fleet=fleet_value,
            state=self.state,
            reason=reason,
            closed=time.time(),
            code_hash=outcome.code_hash,
            off_board_hash=off_board_hash,
            set_aside=outcome.set_aside,
        )
        self.completed = number
        metrics.iteration_closed(status.value, time.monotonic() - started)
        log.info("assignment %d iteration %d %s: %s", self.id, number, status.value, reason)
        self.fleet.publish(self.id, ("iteration", number))
