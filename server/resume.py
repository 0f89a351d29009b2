"""Going on with the assignments a previous server process left running.

A server that stops (SIGTERM, a crash, SIGKILL, the machine losing power) is not the
end of its assignments. Everything a running assignment needs is in the store: the
spec and vehicles, the closed iterations and the fleet state the last one left, the
open iteration with the task it sent (its number, state, each vehicle's module
version, the off-board version it keeps), the versions (who should run what, who
acknowledged what, the off-board version in force and the one due next, a pending
migrate), and every result received. The next server process rebuilds a runner from
that, before it accepts connections:

- the closed iterations stay as they are;
- the open iteration is reopened under the same number; the results already stored
  for it are its answers, so a vehicle that answered is not asked again; its task
  goes to the others now and whenever they reconnect;
- its deadline is a full `deadline` from the resume, not what was left of it: the
  vehicles cannot have answered while no server listened, so a server down for
  longer than the deadline must not fail an iteration they can still answer;
- then the next iterations follow as if nothing happened.

An assignment whose stored state cannot be read (a malformed spec, a version missing
from the registry, an open iteration stored without its task by an older server) is
marked `interrupted` with the reason; it never keeps the server from starting.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from oodida.server.modules import OffBoardRunner
from oodida.server.runner import AssignmentRunner, Fleet
from oodida.server.storage import Store
from oodida.server.versions import AssignmentVersions, expand_map
from oodida.wire.messages import Task
from oodida.wire.states import ASSIGNMENT, AssignmentEvent, AssignmentState

log = logging.getLogger(__name__)


class ResumeError(Exception):
    """A running assignment's stored state cannot be resumed; the message says why."""


@dataclass(frozen=True, slots=True)
class Resumed:
    runner: AssignmentRunner
    detail: str  # for the audit log and the server's log


def rebuild(fleet: Fleet, store: Store, modules: OffBoardRunner | None, assignment: int) -> Resumed:
    """A runner that goes on where the stored assignment stands (not started yet).
    Raises ResumeError, or whatever reading a malformed row raises."""
    row = store.assignment(assignment)
    if row is None:
        raise ResumeError(f"no assignment {assignment}")
    point = store.resume_point(assignment)
    runner = AssignmentRunner(fleet, store, assignment, row.spec, row.vehicles, modules)
    saved = store.saved_versions(assignment)
    versions = None
    if saved is not None:
        versions = AssignmentVersions.restore(
            row.vehicles, json.loads(saved), store.signed_module, store.latest_acks(assignment)
        )
    elif point.closed or point.open is not None:
        raise ResumeError("its module versions were not saved (a database from before resume)")
    runner.restore(closed=point.last_closed, state=point.state, versions=versions)
    if point.last_status == "cancelled" and point.open is None:
        # cancelled, and stopped before the assignment was marked so: it ends as it was going to
        runner.cancel()
        return Resumed(runner, f"iteration {point.last_closed} was cancelled; the assignment ends cancelled")
    if point.open is None:
        return Resumed(runner, f"{point.closed} iterations closed; going on with iteration {point.last_closed + 1}")
    opened = point.open
    if opened.number != point.last_closed + 1:
        raise ResumeError(f"iteration {opened.number} is open but the last closed one is {point.last_closed}")
    task_hashes = expand_map(opened.task_hashes, row.vehicles)
    unknown = sorted({h for h in task_hashes.values() if h not in runner.versions.sources})
    if unknown:
        raise ResumeError(f"the task of the open iteration {opened.number} names unknown versions {', '.join(unknown)}")
    it = runner.new_iteration(opened.number)
    for result in store.results(assignment, opened.number):
        it.add(result)  # a vehicle not selected is left out
    tasks: dict[str | None, Task] = {}  # one per version, as the runner sends them
    sent: dict[str, Task] = {}
    for vehicle in row.vehicles:
        code_hash = task_hashes.get(vehicle)
        if code_hash not in tasks:
            tasks[code_hash] = runner.make_task(opened.number, code_hash, opened.task_state)
        sent[vehicle] = tasks[code_hash]
    # the off-board step starts from the state it started from before the stop
    runner.reopen_iteration(it, sent, state=opened.task_state, off_board=opened.off_board_hash)
    return Resumed(
        runner,
        f"iteration {opened.number} reopened with {len(it.answers)} of {len(it.selected)} answers"
        f" ({point.closed} closed before it)",
    )


def resume_running(fleet: Fleet, store: Store, modules: OffBoardRunner | None) -> dict[int, AssignmentRunner]:
    """Rebuild every assignment the store says is running; mark the ones that cannot
    be rebuilt `interrupted`, with the reason. Audit rows say which was which."""
    runners: dict[int, AssignmentRunner] = {}
    for assignment in store.running_assignments():
        try:
            resumed = rebuild(fleet, store, modules, assignment)
        except Exception as exc:  # whatever a malformed row raises: this one ends, the server starts
            reason = f"cannot resume after the server restarted: {type(exc).__name__}: {exc}"[:4000]
            log.error("assignment %d %s", assignment, reason)
            ended = ASSIGNMENT.next(AssignmentState.RUNNING, AssignmentEvent.INTERRUPT)
            store.finish_assignment(assignment, ended, reason)
            store.audit("server", "resume failed", assignment, reason)
            continue
        detail = resumed.detail
        if store.cancel_requested(assignment):  # killed between the cancel and its iteration's close
            resumed.runner.cancel()
            detail += "; it was cancelled before the stop, so it ends cancelled"
        runners[assignment] = resumed.runner
        store.audit("server", "resumed", assignment, detail)
        log.warning("assignment %d was running when the server last stopped; resumed: %s", assignment, detail)
    return runners
