"""The server's SQLite store: assignments, iterations, results, module versions.

Results are keyed by (assignment, iteration, vehicle) and inserted with
`INSERT OR IGNORE`, so a result delivered twice is stored once. Values are stored as
the CBOR the vehicle sent (arrays stay typed arrays), never re-encoded as text.
WAL mode: the analyst reading results never blocks the iteration loop writing them.

Module versions are kept by content hash (`modules`), each deploy of one to an
assignment is a row of `deployments`, each vehicle's answer a row of `module_acks`,
and `audit` says who did what to which assignment, when: rows are only ever added.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from oodida.wire.codec import decode_value, encode_value
from oodida.wire.messages import AssignmentSpec, ModuleSource, Result
from oodida.wire.states import ASSIGNMENT, AssignmentEvent, AssignmentState

SCHEMA = """
CREATE TABLE IF NOT EXISTS assignments (
    id        INTEGER PRIMARY KEY,
    name      TEXT NOT NULL,
    spec      BLOB NOT NULL,
    vehicles  TEXT NOT NULL,
    state     TEXT NOT NULL,
    created   REAL NOT NULL,
    finished  REAL,
    reason    TEXT
);
CREATE TABLE IF NOT EXISTS iterations (
    assignment INTEGER NOT NULL REFERENCES assignments(id),
    iteration  INTEGER NOT NULL,
    status     TEXT NOT NULL,
    started    REAL NOT NULL,
    closed     REAL,
    missing    TEXT,
    fleet      BLOB,
    state      BLOB,
    reason     TEXT,
    code_hash  TEXT,
    off_board_hash TEXT,
    set_aside  TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (assignment, iteration)
);
CREATE TABLE IF NOT EXISTS results (
    assignment INTEGER NOT NULL,
    iteration  INTEGER NOT NULL,
    vehicle    TEXT NOT NULL,
    ok         INTEGER NOT NULL,
    value      BLOB,
    error      TEXT,
    code_hash  TEXT NOT NULL,
    samples    TEXT NOT NULL,
    t_start    REAL,
    t_end      REAL,
    elapsed    REAL NOT NULL,
    received   REAL NOT NULL,
    late       INTEGER NOT NULL DEFAULT 0,
    flags      TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (assignment, iteration, vehicle)
);
CREATE TABLE IF NOT EXISTS modules (
    hash      TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    source    TEXT NOT NULL,
    stored    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (
    id         INTEGER PRIMARY KEY,
    assignment INTEGER NOT NULL REFERENCES assignments(id),
    side       TEXT NOT NULL,
    hash       TEXT NOT NULL REFERENCES modules(hash),
    kind       TEXT NOT NULL,
    by         TEXT NOT NULL,
    at         REAL NOT NULL,
    vehicles   TEXT
);
CREATE TABLE IF NOT EXISTS deployment_signatures (
    deployment INTEGER PRIMARY KEY REFERENCES deployments(id),
    signer     TEXT NOT NULL,
    signature  BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS module_acks (
    assignment INTEGER NOT NULL,
    side       TEXT NOT NULL,
    hash       TEXT NOT NULL,
    vehicle    TEXT NOT NULL,
    ok         INTEGER NOT NULL,
    error      TEXT,
    at         REAL NOT NULL,
    PRIMARY KEY (assignment, side, hash, vehicle)
);
CREATE TABLE IF NOT EXISTS audit (
    id         INTEGER PRIMARY KEY,
    at         REAL NOT NULL,
    who        TEXT NOT NULL,
    action     TEXT NOT NULL,
    assignment INTEGER,
    detail     TEXT NOT NULL
);
"""

# columns added after the first release, for databases made before them
ADDED_COLUMNS = {
    "iterations": {"code_hash": "TEXT", "off_board_hash": "TEXT", "set_aside": "TEXT NOT NULL DEFAULT '{}'"},
    # what a restarted server needs to go on with a running assignment (server/resume.py):
    # the versions (targets, acknowledgements, off-board in force and next) as JSON
    "assignments": {"versions": "TEXT"},
}
# the task an open iteration sent: the fleet state that went with it, and the module
# version each vehicle was asked for (JSON); so a restart reopens it as it was
ADDED_COLUMNS["iterations"].update(task_state="BLOB", task_hashes="TEXT")
# each signal's unit (from the vehicle's DBC) as JSON; databases from before it read as no units
ADDED_COLUMNS["results"] = {"units": "TEXT NOT NULL DEFAULT '{}'"}


def dump_value(value: Any) -> bytes:
    return encode_value(value)


def load_value(blob: bytes | None) -> Any:
    return None if blob is None else decode_value(blob)


@dataclass(frozen=True, slots=True)
class AssignmentRow:
    id: int
    name: str
    spec: AssignmentSpec
    vehicles: list[str]
    state: AssignmentState
    created: float
    finished: float | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class IterationRow:
    assignment: int
    iteration: int
    status: str
    started: float
    closed: float | None
    missing: list[str]
    fleet: Any
    reason: str | None
    code_hash: str | None = None
    off_board_hash: str | None = None
    set_aside: dict[str, str] = field(default_factory=dict)


class ResultRow(NamedTuple):
    vehicle: str
    ok: bool
    value: Any
    error: str | None
    code_hash: str
    samples: dict[str, int]
    flags: list[str]
    late: bool
    t_start: float | None = None
    t_end: float | None = None
    units: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class OpenIteration:
    """An iteration that was open when the server stopped, with the task it sent."""

    number: int
    started: float
    task_state: Any
    task_hashes: dict[str, str | None]  # the module version each vehicle's task named (versions.compact_map)
    off_board_hash: str | None


@dataclass(frozen=True, slots=True)
class ResumePoint:
    closed: int  # iterations closed
    last_closed: int  # the number of the last one (0: none)
    state: Any  # the fleet state the last closed iteration left
    open: OpenIteration | None
    last_status: str | None = None  # of the last closed iteration


@dataclass(frozen=True, slots=True)
class DeploymentRow:
    id: int
    assignment: int
    side: str
    code_hash: str
    name: str
    kind: str  # submit, deploy, rollback
    by: str
    at: float
    vehicles: list[str] | None  # None: all of the assignment's vehicles


@dataclass(frozen=True, slots=True)
class AuditRow:
    at: float
    who: str
    action: str
    assignment: int | None
    detail: str


_INSERT_RESULT = (
    "INSERT OR IGNORE INTO results (assignment, iteration, vehicle, ok, value, error, code_hash, samples,"
    " t_start, t_end, elapsed, received, late, flags, units) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _result_params(result: Result, late: bool, received: float) -> tuple[Any, ...]:
    return (
        result.assignment, result.iteration, result.vehicle, int(result.ok), dump_value(result.value), result.error,
        result.code_hash, json.dumps(result.samples), result.t_start, result.t_end, result.elapsed, received,
        int(late), json.dumps(result.flags), json.dumps(result.units),
    )


class SqliteStore:
    """Thin, synchronous: every call is one short transaction on a local file."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        for table, columns in ADDED_COLUMNS.items():
            have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            for column, declaration in columns.items():
                if column not in have:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def close(self) -> None:
        self.db.close()

    # --- assignments ---------------------------------------------------------

    def create_assignment(self, spec: AssignmentSpec, vehicles: list[str]) -> int:
        cur = self.db.execute(
            "INSERT INTO assignments (name, spec, vehicles, state, created) VALUES (?, ?, ?, ?, ?)",
            (spec.name, msgspec.json.encode(spec), json.dumps(vehicles), AssignmentState.RUNNING, time.time()),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def finish_assignment(self, assignment: int, state: AssignmentState, reason: str | None = None) -> None:
        """End a running assignment in `state` (what `wire.states.ASSIGNMENT` says its end leads
        to); one no longer running is left as it is: it ended once."""
        self.db.execute(
            "UPDATE assignments SET state = ?, finished = ?, reason = ? WHERE id = ? AND state = ?",
            (state, time.time(), reason, assignment, AssignmentState.RUNNING),
        )

    def interrupt_running(self, reason: str) -> list[int]:
        """Mark assignments a previous server process left running; returns their ids."""
        running = AssignmentState.RUNNING
        ids = [row[0] for row in self.db.execute("SELECT id FROM assignments WHERE state = ?", (running,))]
        self.db.execute(
            "UPDATE assignments SET state = ?, finished = ?, reason = ? WHERE state = ?",
            (ASSIGNMENT.next(running, AssignmentEvent.INTERRUPT), time.time(), reason, running),
        )
        return ids

    def running_assignments(self) -> list[int]:
        """Ids of the assignments a previous server process left running, oldest first."""
        rows = self.db.execute("SELECT id FROM assignments WHERE state = ? ORDER BY id", (AssignmentState.RUNNING,))
        return [row[0] for row in rows]

    def save_versions(self, assignment: int, versions: str) -> None:
        """The running assignment's versions (JSON), for a restarted server."""
        self.db.execute("UPDATE assignments SET versions = ? WHERE id = ?", (versions, assignment))

    def saved_versions(self, assignment: int) -> str | None:
        row = self.db.execute("SELECT versions FROM assignments WHERE id = ?", (assignment,)).fetchone()
        return None if row is None else row[0]

    def assignment(self, assignment: int) -> AssignmentRow | None:
        row = self.db.execute(
            "SELECT id, name, spec, vehicles, state, created, finished, reason FROM assignments WHERE id = ?",
            (assignment,),
        ).fetchone()
        return None if row is None else self._assignment_row(row)

    def assignments(self, limit: int = 50) -> list[AssignmentRow]:
        rows = self.db.execute(
            "SELECT id, name, spec, vehicles, state, created, finished, reason FROM assignments"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [self._assignment_row(r) for r in rows]

    @staticmethod
    def _assignment_row(row: tuple[Any, ...]) -> AssignmentRow:
        return AssignmentRow(
            id=row[0],
            name=row[1],
            spec=msgspec.json.decode(row[2], type=AssignmentSpec),
            vehicles=json.loads(row[3]),
            state=AssignmentState(row[4]),
            created=row[5],
            finished=row[6],
            reason=row[7],
        )

    # --- iterations ------------------------------------------------------------

    def open_iteration(self, assignment: int, iteration: int, started: float) -> None:
        self.db.execute(
            "INSERT INTO iterations (assignment, iteration, status, started) VALUES (?, ?, 'open', ?)",
            (assignment, iteration, started),
        )

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
    ) -> None:
        """Open an iteration with everything a restarted server needs to reopen it: the
        state sent with its task, each vehicle's module version, the off-board version
        it keeps, and the assignment's versions as they are now. One transaction, so a
        kill leaves either the previous iteration's boundary or this one, whole."""
        self.db.execute("BEGIN")
        try:
            self.db.execute(
                "INSERT INTO iterations (assignment, iteration, status, started, task_state, task_hashes,"
                " off_board_hash) VALUES (?, ?, 'open', ?, ?, ?, ?)",
                (assignment, iteration, started, dump_value(task_state), json.dumps(task_hashes), off_board_hash),
            )
            self.db.execute("UPDATE assignments SET versions = ? WHERE id = ?", (versions, assignment))
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def resume_point(self, assignment: int) -> ResumePoint:
        """Where a running assignment stands on disk: its closed iterations, the state
        the last one left, and the open iteration (if one is) with its task."""
        closed = self.db.execute(
            "SELECT COUNT(*), MAX(iteration) FROM iterations WHERE assignment = ? AND status != 'open'", (assignment,)
        ).fetchone()
        count, last = int(closed[0]), closed[1]
        state, last_status = None, None
        if last is not None:
            blob, last_status = self.db.execute(
                "SELECT state, status FROM iterations WHERE assignment = ? AND iteration = ?", (assignment, last)
            ).fetchone()
            state = load_value(blob)
        row = self.db.execute(
            "SELECT iteration, started, task_state, task_hashes, off_board_hash FROM iterations"
            " WHERE assignment = ? AND status = 'open' ORDER BY iteration",
            (assignment,),
        ).fetchall()
        if len(row) > 1:
            raise ValueError(f"iterations {', '.join(str(r[0]) for r in row)} are all open; only one can be")
        open_ = None
        if row:
            number, started, task_state, task_hashes, off_board_hash = row[0]
            if task_hashes is None:
                raise ValueError(f"the open iteration {number} was stored without its task")
            open_ = OpenIteration(number, started, load_value(task_state), json.loads(task_hashes), off_board_hash)
        return ResumePoint(closed=count, last_closed=last or 0, state=state, open=open_, last_status=last_status)

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
    ) -> None:
        self.db.execute(
            "UPDATE iterations SET status = ?, closed = ?, missing = ?, fleet = ?, state = ?, reason = ?,"
            " code_hash = ?, off_board_hash = ?, set_aside = ? WHERE assignment = ? AND iteration = ?",
            (
                status, closed, json.dumps(missing), dump_value(fleet), dump_value(state), reason,
                code_hash, off_board_hash, json.dumps(set_aside or {}), assignment, iteration,
            ),
        )

    def completed_iterations(self, assignment: int) -> int:
        (n,) = self.db.execute(
            "SELECT COUNT(*) FROM iterations WHERE assignment = ? AND status != 'open'", (assignment,)
        ).fetchone()
        return int(n)

    def iteration_counts(self, assignment: int) -> dict[str, int]:
        """Closed iterations by status (complete, quorum, partial, failed, cancelled)."""
        rows = self.db.execute(
            "SELECT status, COUNT(*) FROM iterations WHERE assignment = ? AND status != 'open' GROUP BY status",
            (assignment,),
        ).fetchall()
        return {str(status): int(n) for status, n in rows}

    def iterations(self, assignment: int, since: int = 0) -> Iterator[IterationRow]:
        rows = self.db.execute(
            "SELECT assignment, iteration, status, started, closed, missing, fleet, reason, code_hash,"
            " off_board_hash, set_aside FROM iterations"
            " WHERE assignment = ? AND iteration > ? AND status != 'open' ORDER BY iteration",
            (assignment, since),
        ).fetchall()
        for r in rows:
            yield IterationRow(
                r[0], r[1], r[2], r[3], r[4], json.loads(r[5] or "[]"), load_value(r[6]), r[7],
                r[8], r[9], json.loads(r[10] or "{}"),
            )

    # --- results -----------------------------------------------------------------

    def add_result(self, result: Result, *, late: bool = False) -> bool:
        """Store a vehicle's result once; False when this key was already stored."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO results (assignment, iteration, vehicle, ok, value, error, code_hash, samples,"
            " t_start, t_end, elapsed, received, late, flags, units)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                result.assignment,
                result.iteration,
                result.vehicle,
                int(result.ok),
                dump_value(result.value),
                result.error,
                result.code_hash,
                json.dumps(result.samples),
                result.t_start,
                result.t_end,
                result.elapsed,
                time.time(),
                int(late),
                json.dumps(result.flags),
                json.dumps(result.units),
            ),
        )
        return cur.rowcount == 1

    def add_results(self, rows: list[tuple[Result, bool]]) -> list[bool]:
        """Store many vehicles' results, (result, late) each, in one transaction; for
        each, False when its key was already stored. All or none: on an error nothing
        of the batch is kept and the error is raised (so none of them is acknowledged).
        A commit costs more than the rest of handling a result: a fleet answers in
        bursts, and one commit per burst keeps up with ten thousand vehicles."""
        received = time.time()
        stored = []
        self.db.execute("BEGIN")
        try:
            for result, late in rows:
                cur = self.db.execute(_INSERT_RESULT, _result_params(result, late, received))
                stored.append(cur.rowcount == 1)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return stored

    def results(self, assignment: int, iteration: int) -> list[Result]:
        rows = self.db.execute(
            "SELECT vehicle, ok, value, error, code_hash, samples, t_start, t_end, elapsed, flags, units FROM results"
            " WHERE assignment = ? AND iteration = ? ORDER BY vehicle",
            (assignment, iteration),
        )
        return [
            Result(
                assignment=assignment,
                iteration=iteration,
                vehicle=r[0],
                ok=bool(r[1]),
                value=load_value(r[2]),
                error=r[3],
                code_hash=r[4],
                samples=json.loads(r[5]),
                t_start=r[6],
                t_end=r[7],
                elapsed=r[8],
                flags=json.loads(r[9]),
                units=json.loads(r[10] or "{}"),
            )
            for r in rows
        ]

    def result_rows(self, assignment: int, iteration: int) -> list[ResultRow]:
        """An iteration's stored results as they are, for reports: the values were
        checked when they arrived, and checking them again as `Result`s (as
        `results()` does) was a third of building a report for a large fleet."""
        rows = self.db.execute(
            "SELECT vehicle, ok, value, error, code_hash, samples, flags, late, t_start, t_end, units FROM results"
            " WHERE assignment = ? AND iteration = ? ORDER BY vehicle",
            (assignment, iteration),
        )
        return [
            ResultRow(
                r[0], bool(r[1]), load_value(r[2]), r[3], r[4], json.loads(r[5]), json.loads(r[6]), bool(r[7]),
                r[8], r[9], json.loads(r[10] or "{}"),
            )
            for r in rows
        ]

    def late_vehicles(self, assignment: int, iteration: int) -> set[str]:
        rows = self.db.execute(
            "SELECT vehicle FROM results WHERE assignment = ? AND iteration = ? AND late = 1", (assignment, iteration)
        )
        return {r[0] for r in rows}

    # --- module versions, deploys, audit ---------------------------------------------

    def add_module(self, code_hash: str, name: str, source: str) -> None:
        """Keep a version's source under its hash (once: the hash names the content)."""
        self.db.execute(
            "INSERT OR IGNORE INTO modules (hash, name, source, stored) VALUES (?, ?, ?, ?)",
            (code_hash, name, source, time.time()),
        )

    def module(self, code_hash: str) -> tuple[str, str] | None:
        """(name, source) of a stored version."""
        row = self.db.execute("SELECT name, source FROM modules WHERE hash = ?", (code_hash,)).fetchone()
        return None if row is None else (row[0], row[1])

    def add_deployment(
        self, assignment: int, side: str, code_hash: str, kind: str, by: str, vehicles: list[str] | None
    ) -> int:
        cur = self.db.execute(
            "INSERT INTO deployments (assignment, side, hash, kind, by, at, vehicles) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (assignment, side, code_hash, kind, by, time.time(), None if vehicles is None else json.dumps(vehicles)),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def deployments(self, assignment: int) -> list[DeploymentRow]:
        """Every deploy of the assignment, oldest first."""
        rows = self.db.execute(
            "SELECT d.id, d.assignment, d.side, d.hash, m.name, d.kind, d.by, d.at, d.vehicles"
            " FROM deployments d JOIN modules m ON m.hash = d.hash WHERE d.assignment = ? ORDER BY d.id",
            (assignment,),
        )
        return [
            DeploymentRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], None if r[8] is None else json.loads(r[8]))
            for r in rows
        ]

    def add_signed_deployment(
        self, assignment: int, side: str, code_hash: str, kind: str, by: str, vehicles: list[str] | None,
        module: ModuleSource,
    ) -> int:
        """`add_deployment`, and the module's signature if it carries one, in one
        transaction: a deploy is never stored without the signature it was sent with
        (a server that resumes it would send it unsigned, and vehicles that require
        signatures would refuse it)."""
        self.db.execute("BEGIN")
        try:
            deployment = self.add_deployment(assignment, side, code_hash, kind, by, vehicles)
            if module.signer is not None and module.signature is not None:
                self.add_deployment_signature(deployment, module.signer, module.signature)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return deployment

    def add_deployment_signature(self, deployment: int, signer: str, signature: bytes) -> None:
        """The analyst's signature (and key id) of the module a deploy sent: kept per
        deploy, as the same content may be sent signed, unsigned or by another key."""
        self.db.execute(
            "INSERT INTO deployment_signatures (deployment, signer, signature) VALUES (?, ?, ?)",
            (deployment, signer, signature),
        )

    def signature(self, code_hash: str, side: str) -> tuple[str, bytes] | None:
        """(signer, signature) of the latest deploy of this version to `side` that was
        signed, in any assignment: what a rollback sends with it. A signature covers
        the content and the side only, so any one of them serves."""
        row = self.db.execute(
            "SELECT s.signer, s.signature FROM deployment_signatures s JOIN deployments d ON d.id = s.deployment"
            " WHERE d.hash = ? AND d.side = ? ORDER BY d.id DESC LIMIT 1",
            (code_hash, side),
        ).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def signed_module(self, code_hash: str, side: str) -> ModuleSource | None:
        """A stored version as it is sent to `side` again (a rollback, a restarted
        server resuming): its name, its source and the latest signature it was
        deployed to that side with, if any. None when no such version is stored."""
        stored = self.module(code_hash)
        if stored is None:
            return None
        signed = self.signature(code_hash, side)
        if signed is None:
            return ModuleSource(name=stored[0], source=stored[1])
        return ModuleSource(name=stored[0], source=stored[1], signer=signed[0], signature=signed[1])

    def deployment_signers(self, assignment: int) -> dict[int, str]:
        """deploy id -> the key id that signed its module, for the signed deploys."""
        rows = self.db.execute(
            "SELECT s.deployment, s.signer FROM deployment_signatures s JOIN deployments d ON d.id = s.deployment"
            " WHERE d.assignment = ?",
            (assignment,),
        )
        return {r[0]: r[1] for r in rows}

    def add_module_acks(self, rows: list[tuple[int, str, str, str, bool, str | None]]) -> None:
        """Vehicles' latest answers to versions, (assignment, side, hash, vehicle, ok,
        error) each, in one transaction: a fleet answers a deploy in a burst, and a
        commit per answer would cost more than the rest of handling it."""
        now = time.time()
        self.db.execute("BEGIN")
        try:
            self.db.executemany(
                "INSERT OR REPLACE INTO module_acks (assignment, side, hash, vehicle, ok, error, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(a, side, h, v, int(ok), error, now) for a, side, h, v, ok, error in rows],
            )
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def module_acks(self, assignment: int) -> dict[tuple[str, str], list[str]]:
        """(side, hash) -> the vehicles that acknowledged it, sorted."""
        out: dict[tuple[str, str], list[str]] = {}
        for side, code_hash, vehicle in self.db.execute(
            "SELECT side, hash, vehicle FROM module_acks WHERE assignment = ? AND ok = 1 ORDER BY vehicle",
            (assignment,),
        ):
            out.setdefault((side, code_hash), []).append(vehicle)
        return out

    def latest_acks(self, assignment: int) -> dict[str, str]:
        """vehicle -> the on-board version it acknowledged last (a vehicle's answer to a
        version replaces its earlier one, so the newest row is the latest)."""
        out: dict[str, str] = {}
        for vehicle, code_hash in self.db.execute(
            "SELECT vehicle, hash FROM module_acks WHERE assignment = ? AND side = 'on_board' AND ok = 1"
            " ORDER BY at, rowid",
            (assignment,),
        ):
            out[vehicle] = code_hash
        return out

    def served(self, assignment: int) -> dict[tuple[str, str], list[int]]:
        """(side, hash) -> the iterations whose aggregate that version computed."""
        out: dict[tuple[str, str], list[int]] = {}
        for iteration, on_board, off_board in self.db.execute(
            "SELECT iteration, code_hash, off_board_hash FROM iterations"
            " WHERE assignment = ? AND status != 'open' ORDER BY iteration",
            (assignment,),
        ):
            if on_board is not None:
                out.setdefault(("on_board", on_board), []).append(iteration)
            if off_board is not None:
                out.setdefault(("off_board", off_board), []).append(iteration)
        return out

    def audit(self, who: str, action: str, assignment: int | None, detail: str) -> None:
        self.db.execute(
            "INSERT INTO audit (at, who, action, assignment, detail) VALUES (?, ?, ?, ?, ?)",
            (time.time(), who, action, assignment, detail),
        )

    def cancel_requested(self, assignment: int) -> bool:
        """Whether an analyst asked to cancel `assignment`. The audit row is committed
        when the request arrives, so a server killed before the cancelled iteration
        closed still knows, and the next one does not resume what was cancelled."""
        row = self.db.execute(
            "SELECT 1 FROM audit WHERE assignment = ? AND action = 'cancel' LIMIT 1", (assignment,)
        ).fetchone()
        return row is not None

    def audit_log(self, assignment: int | None = None) -> list[AuditRow]:
        if assignment is None:
            rows = self.db.execute("SELECT at, who, action, assignment, detail FROM audit ORDER BY id")
        else:
            rows = self.db.execute(
                "SELECT at, who, action, assignment, detail FROM audit WHERE assignment = ? ORDER BY id",
                (assignment,),
            )
        return [AuditRow(*r) for r in rows]


# callers that open the SQLite database by name (app, tests, benches) keep using `Store(path)`
Store = SqliteStore
