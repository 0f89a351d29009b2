"""The runners' `Fleet` port without sockets: scripted vehicles, in memory.

`AssignmentRunner` talks to the fleet only through `runner.Fleet` (send, send to
many, cancel, publish); the server's vehicle room implements it over TLS. This twin
implements it in the same process, so a runner can be driven through quorum,
deadlines, votes, deploys and cancels in a test or a benchmark without a socket or
an agent. Its vehicles answer as a script says: at once or late, never (silent),
unreachable, with an error, or naming other code than they ran. What they compute is
real: the built-in methods through `oodida.analytics`, an analyst's module through a
real sandbox (`SandboxHost`) when the twin has one. Results and acknowledgements go
to the runner as the server hands them over (`on_result`, `on_module_ack`), and to
the store when the twin has one, as the server stores them; answers no open
iteration takes are kept in `late`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from oodida.analytics import registry
from oodida.analytics.arrays import from_wire, to_wire
from oodida.analytics.series import Series
from oodida.sandbox.host import SandboxHost
from oodida.server.runner import AssignmentRunner
from oodida.server.storage import Store
from oodida.wire.messages import (
    BUILTIN_CODE_HASH,
    CancelTask,
    LoadModule,
    Message,
    ModuleAck,
    ModuleSource,
    Result,
    Task,
)

NO_MODULE_HASH = "none"  # what it names a module task it holds no version for


@dataclass
class ScriptedVehicle:
    """One vehicle of the twin and how it behaves; change the fields between
    iterations to change its behaviour from the next task on."""

    name: str
    window: Mapping[str, Series] = field(default_factory=dict)  # every task's window holds these samples
    connected: bool = True  # False: the port cannot reach it (sends report it unreached)
    silent: bool = False  # takes tasks and never answers (a vehicle gone quiet)
    delay: float = 0.0  # seconds from the task to the answer (late, when past the deadline)
    error: str | None = None  # answers ok=False with this reason instead of computing
    code_hash: str | None = None  # names this code in its answers instead of what it ran
    refuse: str | None = None  # refuses module versions with this reason
    loaded: str | None = None  # the on-board version it acknowledged last
    modules: dict[str, ModuleSource] = field(default_factory=dict)  # versions it holds, by hash
    tasks: list[Task] = field(default_factory=list)  # every task it was sent
    cancelled: list[int] = field(default_factory=list)  # assignments whose task it was told to drop


class MemoryFleet:
    """The Fleet port over `ScriptedVehicle`s (see the module docstring)."""

    def __init__(
        self, vehicles: Iterable[ScriptedVehicle], sandbox: SandboxHost | None = None, store: Store | None = None
    ) -> None:
        self.vehicles = {v.name: v for v in vehicles}
        self.sandbox = sandbox  # runs on-board modules; one worker per assignment for all vehicles
        self.store = store  # where results go, late ones marked so (None: nowhere)
        self.runners: dict[int, AssignmentRunner] = {}
        self.events: dict[int, list[tuple[str, Any]]] = {}  # assignment -> what the runner published
        self.late: list[Result] = []  # answers no open iteration took
        self._changed = asyncio.Event()  # set, and replaced, at each publish, task sent and answer given
        self._jobs: set[asyncio.Task[None]] = set()
        self._sandboxed: set[tuple[str, int]] = set()

    def add(self, runner: AssignmentRunner) -> AssignmentRunner:
        """Results and acknowledgements for `runner.id` go to this runner."""
        self.runners[runner.id] = runner
        return runner

    def connected(self, vehicle: str) -> bool:
        v = self.vehicles.get(vehicle)
        return v is not None and v.connected

    # --- the Fleet port -------------------------------------------------------------

    async def send_to(self, vehicle: str, message: Message) -> bool:
        v = self.vehicles.get(vehicle)
        if v is None or not v.connected:
            return False
        if isinstance(message, Task):
            # as on a vehicle, the version is the one loaded when the task arrives
            v.tasks.append(message)
            self._change()
            name = f"answer-{v.name}-{message.assignment}-{message.iteration}"
            self._spawn(self._answer(v, message, v.loaded), name)
        elif isinstance(message, LoadModule):
            self._load(v, message)  # loaded and acknowledged on arrival, before any later task
        elif isinstance(message, CancelTask):
            v.cancelled.append(message.assignment)
        return True

    async def send_many(self, messages: Mapping[str, Message]) -> list[str]:
        return [vehicle for vehicle, message in messages.items() if not await self.send_to(vehicle, message)]

    async def cancel_tasks(self, vehicles: list[str], assignment: int) -> None:
        for vehicle in vehicles:
            await self.send_to(vehicle, CancelTask(assignment=assignment))

    def publish(self, assignment: int, event: tuple[str, Any]) -> None:
        self.events.setdefault(assignment, []).append(event)
        self._change()

    # --- waiting for the runner -----------------------------------------------------

    def _change(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def until(self, done: Callable[[], bool], timeout: float = 30.0) -> None:
        """Until `done()` holds, checked whenever a runner publishes, a task is sent or
        an answer given."""
        async with asyncio.timeout(timeout):
            while not done():
                await self._changed.wait()

    async def wait_for(self, assignment: int, event: tuple[str, Any], timeout: float = 30.0) -> None:
        """Until the runner of `assignment` has published `event`, e.g. ("iteration", 2)."""
        await self.until(lambda: event in self.events.get(assignment, []), timeout)

    async def sent(self, vehicle: str, tasks: int, timeout: float = 30.0) -> None:
        """Until `vehicle` has been sent `tasks` tasks (so that iteration is open)."""
        await self.until(lambda: len(self.vehicles[vehicle].tasks) >= tasks, timeout)

    async def ended(self, assignment: int, timeout: float = 30.0) -> str:
        """How the runner of `assignment` ended ("done", "cancelled", "failed", ...)."""
        await self.until(lambda: any(k == "end" for k, _ in self.events.get(assignment, [])), timeout)
        return str(next(v for k, v in self.events[assignment] if k == "end"))

    async def close(self) -> None:
        """Drop the answers not given yet and the on-board workers."""
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        if self.sandbox is not None:
            for key in self._sandboxed:
                await self.sandbox.release(key)

    # --- the vehicles' side -----------------------------------------------------------

    def _spawn(self, work: Any, name: str) -> None:
        job = asyncio.create_task(work, name=name)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    def _load(self, v: ScriptedVehicle, message: LoadModule) -> None:
        if v.refuse is not None:
            ack = ModuleAck(assignment=message.assignment, code_hash=message.code_hash, ok=False, error=v.refuse)
        else:
            v.modules[message.code_hash] = message.module
            v.loaded = message.code_hash
            ack = ModuleAck(assignment=message.assignment, code_hash=message.code_hash, ok=True)
        runner = self.runners.get(message.assignment)
        if runner is not None:
            runner.on_module_ack(v.name, ack)

    async def _answer(self, v: ScriptedVehicle, task: Task, version: str | None) -> None:
        if v.silent:
            return
        if v.delay:
            await asyncio.sleep(v.delay)
        result = await self._compute(v, task, version)
        runner = self.runners.get(task.assignment)
        on_time = runner is not None and runner.on_result(result)
        if not on_time:
            self.late.append(result)
        if self.store is not None:
            self.store.add_result(result, late=not on_time)
        self._change()

    async def _compute(self, v: ScriptedVehicle, task: Task, version: str | None) -> Result:
        if task.module_hash is None:
            ran = BUILTIN_CODE_HASH
        else:
            ran = version if version is not None else NO_MODULE_HASH
        common: dict[str, Any] = dict(
            assignment=task.assignment, iteration=task.iteration, vehicle=v.name, code_hash=v.code_hash or ran
        )
        samples = {name: len(s) for name, s in v.window.items()}
        if v.error is not None:
            return Result(**common, ok=False, error=v.error)
        try:
            if task.module_hash is None:
                value = registry.run_on_board(task.methods, v.window, task.params, task.state)
            else:
                value = await self._module_on_board(v, task, version)
            return Result(**common, ok=True, value=to_wire(value), samples=samples)
        except Exception as exc:  # as the agent does: the reason goes back, the vehicle goes on
            return Result(**common, ok=False, error=f"{type(exc).__name__}: {exc}"[:4000])

    async def _module_on_board(self, v: ScriptedVehicle, task: Task, version: str | None) -> Any:
        if version is None:
            raise LookupError(f"no version of assignment {task.assignment}'s module is loaded on {v.name}")
        if self.sandbox is None:
            raise RuntimeError("this MemoryFleet has no sandbox to run on-board modules in")
        module = v.modules[version]
        key = ("vehicles", task.assignment)
        self._sandboxed.add(key)
        arrays = {name: (s.t, s.v) for name, s in v.window.items()}
        outcome = await self.sandbox.run(module.source, module.name, "on_board", assignment=key, window=arrays,
                                         params=task.params, state=from_wire(task.state))
        return outcome.value

