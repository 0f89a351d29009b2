"""The interface the server uses to keep its state: one `Store` Protocol, so a second
backend (PostgreSQL, issue 16) can slot in beside the SQLite one (`server.store.SqliteStore`)
and callers are typed against what they use, not against SQLite.

The row types stay in `server.store` with the SQLite implementation; they are plain
values any backend returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from oodida.server.store import (
    AssignmentRow,
    AuditRow,
    DeploymentRow,
    IterationRow,
    ResultRow,
    ResumePoint,
    SqliteStore,
)
from oodida.wire.messages import AssignmentSpec, ModuleSource, Result
from oodida.wire.states import AssignmentState


class Store(Protocol):
    """What the runner, rooms, resume, deploys, reports and the result writer call.
    Every call is synchronous and its own commit unless it says it is one transaction."""

    def close(self) -> None: ...

    def create_assignment(self, spec: AssignmentSpec, vehicles: list[str]) -> int: ...

    def finish_assignment(self, assignment: int, state: AssignmentState, reason: str | None = None) -> None: ...

    def interrupt_running(self, reason: str) -> list[int]: ...

    def running_assignments(self) -> list[int]: ...

    def save_versions(self, assignment: int, versions: str) -> None: ...

    def saved_versions(self, assignment: int) -> str | None: ...

    def assignment(self, assignment: int) -> AssignmentRow | None: ...

    def assignments(self, limit: int = 50) -> list[AssignmentRow]: ...

    def open_iteration(self, assignment: int, iteration: int, started: float) -> None: ...

    def begin_iteration(
        self,
        assignment: int,
        iteration: int,
        started: float,
        *,
        task_state: Any,
        task_hashes: dict[str, str | None],
        off_board_hash: str | None,
        versions: str,
    ) -> None: ...

    def resume_point(self, assignment: int) -> ResumePoint: ...

    def close_iteration(
        self,
        assignment: int,
        iteration: int,
        *,
        status: str,
        missing: list[str],
        fleet: Any,
        state: Any,
        reason: str | None,
        closed: float,
        code_hash: str | None = None,
        off_board_hash: str | None = None,
        set_aside: dict[str, str] | None = None,
    ) -> None: ...

    def completed_iterations(self, assignment: int) -> int: ...

    def iteration_counts(self, assignment: int) -> dict[str, int]: ...

    def iterations(self, assignment: int, since: int = 0) -> Iterator[IterationRow]: ...

    def add_result(self, result: Result, *, late: bool = False) -> bool: ...

    def add_results(self, rows: list[tuple[Result, bool]]) -> list[bool]: ...

    def results(self, assignment: int, iteration: int) -> list[Result]: ...

    def result_rows(self, assignment: int, iteration: int) -> list[ResultRow]: ...

    def late_vehicles(self, assignment: int, iteration: int) -> set[str]: ...

    def add_module(self, code_hash: str, name: str, source: str) -> None: ...

    def module(self, code_hash: str) -> tuple[str, str] | None: ...

    def add_deployment(
        self, assignment: int, side: str, code_hash: str, kind: str, by: str, vehicles: list[str] | None
    ) -> int: ...

    def deployments(self, assignment: int) -> list[DeploymentRow]: ...

    def add_signed_deployment(
        self, assignment: int, side: str, code_hash: str, kind: str, by: str, vehicles: list[str] | None,
        module: ModuleSource,
    ) -> int: ...

    def add_deployment_signature(self, deployment: int, signer: str, signature: bytes) -> None: ...

    def signature(self, code_hash: str, side: str) -> tuple[str, bytes] | None: ...

    def signed_module(self, code_hash: str, side: str) -> ModuleSource | None: ...

    def deployment_signers(self, assignment: int) -> dict[int, str]: ...

    def add_module_acks(self, rows: list[tuple[int, str, str, str, bool, str | None]]) -> None: ...

    def module_acks(self, assignment: int) -> dict[tuple[str, str], list[str]]: ...

    def latest_acks(self, assignment: int) -> dict[str, str]: ...

    def served(self, assignment: int) -> dict[tuple[str, str], list[int]]: ...

    def audit(self, who: str, action: str, assignment: int | None, detail: str) -> None: ...

    def cancel_requested(self, assignment: int) -> bool: ...

    def audit_log(self, assignment: int | None = None) -> list[AuditRow]: ...


# mypy checks here that the SQLite store is a `Store`; a second backend gets its own line
_SQLITE: type[Store] = SqliteStore
