"""Drives one assignment, iteration by iteration.

For each iteration: put in force the module versions deployed since the last one
(running a new version's migrate(old_state) on the state), send the task (with the
previous iteration's fleet state) to the selected vehicles, wait for quorum or the
deadline, take the majority version's answers, run the off-board step on their
successful ones, store the outcome and tell the subscribers. A vehicle that is gone
never stalls the fleet beyond the deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from analytics import registry
from analytics.arrays import from_wire, to_wire
from server.iteration import Iteration, Status, quorum_count
from sandbox.supervisor import source_hash
from server.modules import OffBoardRunner
from server.store import Store
from server.versions import AssignmentVersions
from wire.messages import AssignmentSpec, LoadModule, Message, ModuleAck, Result, Task

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

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self.run(), name=f"assignment-{self.id}")
        return self.task

    def cancel(self) -> None:
        self._cancelled = True
        self._wake.set()

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
        number = 0
        final, reason = "done", None
        try:
            loads = [(v, self.load_for(v)) for v in self.vehicles]
            await asyncio.gather(*(self.fleet.send_to(v, load) for v, load in loads if load is not None))
            while spec.iterations == 0 or number < spec.iterations:
                if self._cancelled:
                    final = "cancelled"
                    break
                number += 1
                await self._iterate(number)
                if self._cancelled:
                    final = "cancelled"
                    break
        except asyncio.CancelledError:
            final, reason = "interrupted", "the server stopped while it ran"
            raise
        except Exception as exc:  # a bug here must end this assignment, not the server
            log.exception("assignment %d failed", self.id)
            final, reason = "failed", f"internal error: {exc}"
        finally:
            self.current = None
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
            module = v.sources[code_hash]
            try:
                if self.modules is not None and "migrate" in (await self.modules.load(module.source, module.name))[1]:
                    self.state = to_wire(await self.modules.migrate(module, from_wire(self.state)))
                    self.store.audit("server", "migrate", self.id, f"{side} {code_hash} migrated the state")
            except Exception as exc:
                log.warning("assignment %d: migrate of %s failed: %s", self.id, code_hash[:12], exc)
                self.store.audit("server", "migrate failed", self.id, f"{side} {code_hash}: {exc}"[:4000])
                continue
            if side == "off_board":
                v.off_board = code_hash
                log.info("assignment %d: off-board version %s in force", self.id, code_hash[:12])

    async def _off_board(self, answers: dict[str, Result], off_board_hash: str | None) -> Any:
        """The fleet result of one iteration (None when there is no off-board step);
        updates the state the vehicles get with the next task."""
        spec = self.spec
        if off_board_hash is not None:
            if self.modules is None:
                raise RuntimeError("this server runs no off-board modules")
            results = {v: from_wire(r.value) for v, r in answers.items()}
            module = self.versions.sources[off_board_hash]
            fleet = await self.modules.off_board(module, results, spec.params, from_wire(self.state))
            self.state = to_wire(fleet)  # what off_board returned goes to the vehicles next
            return self.state
        if spec.off_board != "fleet" or not spec.methods:
            return None
        partials = {v: from_wire(r.value) for v, r in answers.items()}
        fleet, next_state = await asyncio.to_thread(
            registry.run_off_board, spec.methods, partials, spec.params, from_wire(self.state)
        )
        if next_state is not None:
            self.state = to_wire(next_state)
        return to_wire(fleet)

    async def _iterate(self, number: int) -> None:
        spec = self.spec
        await self._switch_versions()
        off_board_hash = self.versions.off_board  # the iteration keeps it, whatever is deployed meanwhile
        started_wall = time.time()
        started = time.monotonic()
        it = Iteration(
            assignment=self.id,
            number=number,
            selected=tuple(self.vehicles),
            quorum=quorum_count(spec.quorum, len(self.vehicles)),
            deadline_at=started + spec.deadline,
        )
        self.store.open_iteration(self.id, number, started_wall)
        tasks: dict[str | None, Task] = {}  # one per version asked for (usually one)
        for vehicle in self.vehicles:
            code_hash = self.versions.target.get(vehicle)
            if code_hash not in tasks:
                tasks[code_hash] = Task(
                    assignment=self.id,
                    iteration=number,
                    signals=spec.signals,
                    window=spec.window,
                    methods=spec.methods,
                    params=spec.params,
                    deadline=spec.deadline,
                    state=self.state,
                    module_hash=code_hash,
                )
            self.current_task[vehicle] = tasks[code_hash]
        self._wake.clear()
        self.current = it
        await self.fleet.send_many(self.current_task)  # each distinct task encoded once
        while not self._cancelled and not it.should_close(time.monotonic()):
            remaining = it.deadline_at - time.monotonic()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(remaining, 0.0))
            except asyncio.TimeoutError:
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
        log.info("assignment %d iteration %d %s: %s", self.id, number, status.value, reason)
        self.fleet.publish(self.id, ("iteration", number))
