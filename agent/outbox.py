"""Results waiting for the server's acknowledgement, in an SQLite file.

A result is committed here, durably, the moment it is computed and before it is
sent; it stays until the server acknowledges it and goes out again on every
reconnect, oldest first. The server stores each (assignment, iteration, vehicle)
once, so resending is safe, and an agent killed (SIGKILL, a power cut) after
computing a result still holds it when it starts again.

Why each choice:

- The value is the `Result` encoded by wire's codec, the bytes the server would
  receive: no second format to keep in step with the messages.
- `journal_mode=WAL`, `synchronous=FULL`: one fsync of the log per commit, so a
  committed result survives a power cut, not only a crash. NORMAL would survive a
  crash but could lose the last results on power loss; `bench/outbox.py` measures
  what FULL costs per result (a few ms on a disk, against results that come at most
  a few per second), so FULL.
- `locking_mode=EXCLUSIVE`: one agent per file. A second agent configured with the
  same file fails to start with a clear reason instead of mixing two vehicles' results.
- Bounded by `max_results` and `max_bytes`. Past either the *oldest* result is
  dropped (the newest is closest to what the analyst watches), logged by assignment
  and iteration with the limit, and counted (`dropped`, kept in the file) so the
  vehicle's status tells the server.
- A disk that refuses a write (full, failing) costs no result: it is kept in memory,
  the reason is logged (once per reason and set of results held) and shown in
  `error`, and it is written by the next write or `retry()` that succeeds. Nothing
  raises into the task runner or the link.
- A file that is corrupt or unreadable at start is moved aside (renamed with a UTC
  timestamp, logged) and a new one started, with the results still readable in the
  old one: refusing to start would, under systemd, become a crash loop that loses
  every later result too. A directory we cannot
  write to is a configuration error (`ConfigError`, exit 2): no new file would help.

All methods are synchronous and cheap (a commit per put and per ack); they are called
from the event loop, and a lock makes them safe from threads too.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

from oodida.agent.config import ConfigError
from oodida.wire.codec import decode_payload, encode_payload
from oodida.wire.errors import RemoteProtocolError
from oodida.wire.messages import Result

log = logging.getLogger(__name__)

Key = tuple[int, int]  # (assignment, iteration)

SCHEMA_VERSION = 1
DEFAULT_MAX_RESULTS = 10_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
WAL_SIZE_LIMIT = 4 * 1024 * 1024  # bytes the write-ahead log keeps after a checkpoint
LOCK_TIMEOUT = 2.0  # seconds to wait for a file another agent holds, before saying so

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY,             -- insertion order: oldest first
    assignment INTEGER NOT NULL,
    iteration INTEGER NOT NULL,
    value BLOB NOT NULL,                 -- the Result as wire CBOR
    UNIQUE (assignment, iteration)
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

# A transaction that only forgets results (acknowledged, dropped) is committed without
# an fsync: a power cut may undo it, and the result is then sent again, which the
# server stores once. It halves the fsyncs per result (bench/outbox.py).
_ACK_SYNC = "NORMAL"

# errors that say "this file is not a usable outbox" (as opposed to "in use" or "no room")
_UNUSABLE = ("SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM", "SQLITE_IOERR")
_IN_USE = ("SQLITE_BUSY", "SQLITE_LOCKED")


class UnusableOutbox(Exception):
    """The file is not an outbox we can use (corrupt, foreign, unreadable)."""


def _errorname(exc: sqlite3.Error) -> str:
    return getattr(exc, "sqlite_errorname", "") or ""


def _salvage(aside: Path) -> tuple[list[tuple[Key, bytes]], int]:
    """Every result still readable in a file moved aside, row by row, and its count of
    dropped results: a corrupt page costs the results on it, not the whole outbox.
    Only values that decode to a `Result` of their own key are taken."""
    out: list[tuple[Key, bytes]] = []
    dropped = 0
    try:
        db = sqlite3.connect(aside, isolation_level=None)
    except sqlite3.Error:
        return out, dropped
    try:
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
            dropped = row[0] if row and isinstance(row[0], int) and row[0] >= 0 else 0
        except sqlite3.Error:
            pass
        try:
            seqs = [r[0] for r in db.execute("SELECT seq FROM results ORDER BY seq")]
        except sqlite3.Error:
            try:  # the index of rows is damaged: walk the range of keys instead
                top = db.execute("SELECT max(seq) FROM results").fetchone()[0] or 0
            except sqlite3.Error:
                return out, dropped
            seqs = list(range(1, min(top, 10_000_000) + 1))
        for seq in seqs:
            try:
                row = db.execute("SELECT assignment, iteration, value FROM results WHERE seq = ?", (seq,)).fetchone()
            except sqlite3.Error:
                continue
            if row is None or not isinstance(row[2], bytes):
                continue
            try:
                result = decode_payload(row[2])
            except RemoteProtocolError:
                continue
            if isinstance(result, Result) and (result.assignment, result.iteration) == (row[0], row[1]):
                out.append(((row[0], row[1]), row[2]))
    finally:
        db.close()
    return out, dropped


class Outbox:
    """The results not yet acknowledged, oldest first, in `path` (an SQLite file)."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_results: int = DEFAULT_MAX_RESULTS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        synchronous: str = "FULL",
        light_acks: bool = True,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "OFF", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL, OFF or EXTRA, not {synchronous!r}")
        self.path = Path(path)
        self.max_results = max_results
        self.max_bytes = max_bytes
        self.synchronous = synchronous
        self.light_acks = light_acks and synchronous in ("FULL", "EXTRA")
        self.error: str | None = None  # why results are held in memory, while they are
        self._lock = threading.RLock()
        self._index: OrderedDict[Key, int] = OrderedDict()  # every pending key -> its size, oldest first
        self._bytes = 0
        self._unsaved: OrderedDict[Key, bytes] = OrderedDict()  # put, not yet on disk
        self._doomed: set[Key] = set()  # acknowledged or dropped, still on disk
        self._dropped = 0
        self._dropped_saved = 0
        self._said: tuple[str, tuple[Key, ...]] | None = None  # the last write failure logged
        self._salvaged: tuple[list[tuple[Key, bytes]], int] = ([], 0)
        self.db = self._open()
        if self._salvaged != ([], 0):
            self._restore(*self._salvaged)

    # --- opening -------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        self._check_directory()
        try:
            return self._connect()
        except UnusableOutbox as exc:
            aside = self._move_aside()
            log.error("outbox %s is unusable (%s): moved aside to %s; starting a new one", self.path, exc, aside)
            try:
                db = self._connect()
            except UnusableOutbox as again:
                raise ConfigError(f"cannot create the outbox {self.path}: {again}") from None
            self._salvaged = _salvage(aside)
            return db

    def _restore(self, rows: list[tuple[Key, bytes]], dropped: int) -> None:
        """Results read back from a file moved aside go into the new one, in their
        order, and its count of dropped results goes on."""
        with self._lock:
            self._dropped += dropped
            for key, data in rows:
                if key not in self._index:
                    self._index[key] = len(data)
                    self._bytes += len(data)
                    self._unsaved[key] = data
            self._enforce_limits()
            self._flush()
        log.warning("outbox %s: %d result(s) read back from the file moved aside; they go out on the next connect",
                    self.path, len(rows))

    def _check_directory(self) -> None:
        """A directory we cannot write to is a configuration error, said plainly."""
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".oodida-probe-"):
                pass
        except OSError as exc:
            raise ConfigError(
                f"the outbox directory {folder} is not writable ({exc.strerror}); set [outbox] path to a"
                " writable place (under systemd: the unit's StateDirectory, /var/lib/oodida-agent)"
            ) from None

    def _connect(self) -> sqlite3.Connection:
        db = None
        try:
            db = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise UnusableOutbox(f"journal mode stays {mode}")
            db.execute(f"PRAGMA synchronous = {self.synchronous}")
            # after a backlog went out, the log shrinks back at the next checkpoint
            db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise UnusableOutbox(f"schema version {version}, this agent knows {SCHEMA_VERSION}")
            check = db.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                raise UnusableOutbox("integrity check: " + "; ".join(str(r[0]) for r in check[:3]))
            db.execute("BEGIN IMMEDIATE")  # takes the exclusive lock, kept until close
            if version == 0:
                tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
                if tables:
                    raise UnusableOutbox(f"a database of something else (tables {', '.join(t[0] for t in tables)})")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
            self._load(db)
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            name = _errorname(exc)
            if name.startswith(_IN_USE):
                raise ConfigError(
                    f"the outbox {self.path} is in use by another agent ({exc}); give each agent its own [outbox] path"
                ) from None
            if name.startswith(_UNUSABLE) or isinstance(exc, sqlite3.DatabaseError):
                raise UnusableOutbox(f"{name or type(exc).__name__}: {exc}") from None
            raise
        except UnusableOutbox:
            if db is not None:
                db.close()
            raise
        return db

    def _load(self, db: sqlite3.Connection) -> None:
        self._index.clear()
        self._bytes = 0
        for a, i, size in db.execute("SELECT assignment, iteration, length(value) FROM results ORDER BY seq"):
            self._index[(a, i)] = size
            self._bytes += size
        row = db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        self._dropped = self._dropped_saved = row[0] if row else 0
        if self._index:
            log.info(
                "outbox %s holds %d result(s) from before the restart (%d bytes); they go out on the next connect",
                self.path, len(self._index), self._bytes,
            )

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            if self.path.exists():
                os.replace(self.path, aside)
            for suffix in ("-wal", "-shm", "-journal"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.replace(side, aside.with_name(aside.name + suffix))
        except OSError as exc:
            raise ConfigError(f"the outbox {self.path} is unusable and cannot be moved aside: {exc.strerror}") from None
        return aside

    # --- the outbox ----------------------------------------------------------------

    def put(self, result: Result) -> None:
        """Keep `result` until acknowledged: on disk before this returns (in memory,
        logged, if the disk refuses). A result for a key already held is ignored: the
        first is kept, as the server keeps the first."""
        key = (result.assignment, result.iteration)
        data = encode_payload(result)
        with self._lock:
            if key in self._index:
                log.warning("outbox already holds the result of %d/%d; the first is kept", *key)
                return
            self._index[key] = len(data)
            self._bytes += len(data)
            self._unsaved[key] = data
            self._doomed.discard(key)
            self._enforce_limits()
            self._flush()

    def ack(self, key: Key) -> None:
        """The server stored the result of `key`: forget it."""
        with self._lock:
            size = self._index.pop(key, None)
            if size is None:
                return
            self._bytes -= size
            if self._unsaved.pop(key, None) is None:
                self._doomed.add(key)
            self._flush()

    def get(self, key: Key) -> Result | None:
        """The result held for `key`, or None."""
        with self._lock:
            if key not in self._index:
                return None
            data = self._unsaved.get(key)
            if data is None:
                row = self.db.execute(
                    "SELECT value FROM results WHERE assignment = ? AND iteration = ?", key
                ).fetchone()
                if row is None:
                    return None
                data = row[0]
            return self._decode(key, data)

    def pending(self) -> list[Result]:
        """Every result held, oldest first."""
        with self._lock:
            self._flush()
            out: list[Result] = []
            stored = {}
            if len(self._unsaved) < len(self._index):
                stored = {(a, i): v for a, i, v in self.db.execute(
                    "SELECT assignment, iteration, value FROM results ORDER BY seq"
                )}
            for key in self._index:
                data = self._unsaved.get(key)
                if data is None:
                    data = stored.get(key)
                result = self._decode(key, data) if data is not None else None
                if result is not None:
                    out.append(result)
            return out

    def retry(self) -> bool:
        """Write what the disk refused before; True once nothing is held in memory."""
        with self._lock:
            return self._flush()

    @property
    def dropped(self) -> int:
        """Results dropped over the limits, over the life of this file."""
        return self._dropped

    @property
    def unsaved(self) -> int:
        """Results held in memory only, because the disk refused them."""
        return len(self._unsaved)

    @property
    def size(self) -> int:
        """Bytes of the results held."""
        return self._bytes

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def close(self) -> None:
        with self._lock:
            self._flush()
            if self._unsaved:
                log.error(
                    "outbox closing with %d result(s) the disk refused (%s); they are lost: %s",
                    len(self._unsaved), self.error, ", ".join(f"{a}/{i}" for a, i in self._unsaved),
                )
            self.db.close()

    # --- inside --------------------------------------------------------------------

    def _decode(self, key: Key, data: bytes) -> Result | None:
        try:
            result = decode_payload(data)
        except RemoteProtocolError as exc:
            log.error("outbox: the stored result of %d/%d does not decode (%s); not sent", *key, exc.reason)
            return None
        if not isinstance(result, Result):
            log.error("outbox: the stored value of %d/%d is a %s, not a result; not sent", *key, type(result).__name__)
            return None
        return result

    def _enforce_limits(self) -> None:
        while len(self._index) > 1 and (len(self._index) > self.max_results or self._bytes > self.max_bytes):
            key, size = self._index.popitem(last=False)
            self._bytes -= size
            if self._unsaved.pop(key, None) is None:
                self._doomed.add(key)
            self._dropped += 1
            limit = (
                f"max_results = {self.max_results}" if len(self._index) + 1 > self.max_results
                else f"max_bytes = {self.max_bytes}"
            )
            log.error(
                "outbox full (%s): dropped the oldest result, assignment %d iteration %d (%d bytes); "
                "%d dropped so far", limit, key[0], key[1], size, self._dropped,
            )

    def _flush(self) -> bool:
        """One transaction: forget the doomed, write the unsaved, save the drop count."""
        if not (self._unsaved or self._doomed or self._dropped != self._dropped_saved):
            self.error = self._said = None  # nothing waits in memory (acknowledged meanwhile)
            return True
        light = self.light_acks and not self._unsaved
        try:
            if light:  # only forgetting: see `_ACK_SYNC`
                self.db.execute(f"PRAGMA synchronous = {_ACK_SYNC}")
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany(
                    "DELETE FROM results WHERE assignment = ? AND iteration = ?", list(self._doomed)
                )
                self.db.executemany(
                    "INSERT OR IGNORE INTO results (assignment, iteration, value) VALUES (?, ?, ?)",
                    [(a, i, v) for (a, i), v in self._unsaved.items()],
                )
                if self._dropped != self._dropped_saved:
                    self.db.execute(
                        "INSERT INTO meta (key, value) VALUES ('dropped', ?)"
                        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (self._dropped,),
                    )
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
            finally:
                if light:
                    self.db.execute(f"PRAGMA synchronous = {self.synchronous}")
        except sqlite3.Error as exc:
            reason = f"{exc}" + (f" ({_errorname(exc)})" if _errorname(exc) else "")
            said = (reason, tuple(self._unsaved))
            if said == self._said:  # the periodic retry of the same: said already
                pass
            elif self._unsaved:
                log.error(
                    "outbox %s: cannot write (%s); %d result(s) held in memory until it can: %s",
                    self.path, reason, len(self._unsaved), ", ".join(f"{a}/{i}" for a, i in self._unsaved),
                )
            else:
                log.warning("outbox %s: cannot write (%s); will retry", self.path, reason)
            self._said = said
            self.error = f"cannot write {self.path.name}: {reason}"
            return False
        if self.error is not None:
            log.warning(
                "outbox %s writable again: %d result(s) held in memory are on disk", self.path, len(self._unsaved)
            )
            self.error = None
        self._said = None
        self._unsaved.clear()
        self._doomed.clear()
        self._dropped_saved = self._dropped
        return True
