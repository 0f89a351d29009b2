"""Is the server's database file usable? Asked once, before the server starts.

A server on a truncated, corrupt, foreign or read-only file used to start, say
"listening", and then refuse every peer ("no credential for analyst 'alice'") or log
a traceback per connection. Here the file is looked at before anything opens it, and
each way it can be unusable gets one sentence that names the file and the reason
(`DatabaseUnusable`, exit 2 in `oodida server`: a restart cannot mend it):

- missing: a new, empty database is made (that is how a deployment starts without
  `oodida init`); its folder must exist and be writable;
- empty (0 bytes), or shorter than its own header says: truncated;
- not starting with SQLite's header: not a database (a wrong `database =` path);
- not writable by this user (the file, or its folder, where SQLite keeps the -wal and
  -shm files beside it): read-only;
- `PRAGMA quick_check` (every page of every b-tree read and checked, indexes not
  compared with their tables; see `bench/db_check.py` for its cost) reports problems:
  corrupt.

`corruption(exc)` tells a corruption met later, at run time, from other database
errors, so the server can log it once and stop (server/app.py).
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from pathlib import Path

from oodida.core.errors import OodidaError

HEADER = b"SQLite format 3\x00"
_CORRUPT = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes)
_READONLY = {8, 3, 14}  # SQLITE_READONLY, SQLITE_PERM, SQLITE_CANTOPEN


class DatabaseUnusable(OodidaError):
    """The server's database cannot be used as it is; the message names it and says why."""


def corruption(exc: BaseException) -> str | None:
    """SQLite's reason if `exc` says the database file is corrupt (or not a database
    at all), else None: a full disk or a locked file is not corruption."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _CORRUPT:
        return str(exc)
    text = str(exc)
    if "malformed" in text or "not a database" in text:
        return text
    return None


def check_database(path: str | Path, *, quick: bool = True) -> bool:
    """Raise `DatabaseUnusable` if the file at `path` cannot serve as the server's
    database; return whether it exists (False: a new one will be made). Without
    `quick`, no page past the header is read (server.toml `database_check = "header"`)."""
    path = Path(path)
    if str(path) == ":memory:":
        return True
    if not path.exists():
        folder = path.parent
        if not folder.is_dir():
            raise DatabaseUnusable(f"database {path}: its folder {folder} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise DatabaseUnusable(f"database {path} does not exist and its folder is read-only for uid {os.geteuid()}")
        return False
    if path.is_dir():
        raise DatabaseUnusable(f"database {path} is a directory, not a database file")
    try:
        with open(path, "rb") as f:
            header = f.read(100)
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise DatabaseUnusable(f"cannot read database {path}: {exc.strerror}") from None
    if size == 0:
        raise DatabaseUnusable(
            f"database {path} is empty (0 bytes): truncated, or never written; restore it from a backup, "
            "or remove it to start a new one"
        )
    if not header.startswith(HEADER):
        raise DatabaseUnusable(
            f"{path} is not an SQLite database (it does not start with SQLite's header): "
            "is `database` in server.toml the right file?"
        )
    wal = path.with_name(path.name + "-wal")
    if not (wal.exists() and wal.stat().st_size):
        # with a WAL holding frames, the main file may be mid-checkpoint (its header
        # already counting pages not yet copied): SQLite itself replays the WAL, so
        # leave that file to the quick check below, which reads through it
        _check_length(path, header, size)
    _check_writable(path)
    if quick:
        _quick_check(path)
    return True


def _check_length(path: Path, header: bytes, size: int) -> None:
    """The header's page size and, where it is valid, its page count, against the
    file's length: a cut-off file says so before SQLite reads a missing page."""
    if len(header) < 100:
        raise DatabaseUnusable(f"database {path} is truncated: {size} bytes, shorter than SQLite's header")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise DatabaseUnusable(f"database {path} is corrupt: its header gives an impossible page size ({page_size})")
    if size % page_size:
        raise DatabaseUnusable(
            f"database {path} is truncated: {size} bytes is not a whole number of its {page_size}-byte pages"
        )
    pages = int.from_bytes(header[28:32], "big")
    # the count is valid when "version-valid-for" equals the change counter (SQLite >= 3.7.0)
    if header[92:96] == header[24:28] and pages * page_size > size:
        raise DatabaseUnusable(
            f"database {path} is truncated: its header says {pages} pages ({pages * page_size} bytes), "
            f"the file holds {size} bytes; restore it from a backup"
        )


def _check_writable(path: Path) -> None:
    """The server writes the file, and SQLite makes its -wal and -shm files beside it."""
    uid = os.geteuid()
    if not os.access(path, os.W_OK):
        raise DatabaseUnusable(f"database {path} is read-only for uid {uid}: the server must write it")
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists() and not os.access(extra, os.W_OK):
            raise DatabaseUnusable(
                f"database {path}: {extra.name} is read-only for uid {uid}: the server must write it"
            )
        if not extra.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
            raise DatabaseUnusable(
                f"database {path}: its folder is read-only for uid {uid}, and SQLite must create {extra.name} in it"
            )


def _quick_check(path: Path) -> None:
    """`PRAGMA quick_check` on a connection of its own (closed after, so the server's
    connections start with cold caches and read what is on disk)."""
    uri = f"file:{urllib.parse.quote(str(path))}?mode=rw"
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10.0)
    except sqlite3.Error as exc:
        raise DatabaseUnusable(describe(path, exc)) from None
    try:
        rows = [row[0] for row in db.execute("PRAGMA quick_check(20)")]
    except sqlite3.Error as exc:
        if corruption(exc) is None:
            raise DatabaseUnusable(describe(path, exc)) from None
        raise DatabaseUnusable(
            f"database {path} is corrupt: the integrity check (PRAGMA quick_check) stopped at {exc}; "
            "restore it from a backup"
        ) from None
    finally:
        db.close()
    if rows != ["ok"]:
        more = f" (and {len(rows) - 1} more)" if len(rows) > 1 else ""
        raise DatabaseUnusable(
            f"database {path} is corrupt: the integrity check (PRAGMA quick_check) found {rows[0]}{more}; "
            "restore it from a backup"
        )


def describe(path: str | Path, exc: sqlite3.Error) -> str:
    """One sentence for an SQLite error on opening or checking `path`."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    if primary == 26:
        return f"{path} is not an SQLite database ({exc})"
    if primary == 11 or corruption(exc):
        return f"database {path} is corrupt ({exc}); restore it from a backup"
    if primary in _READONLY:
        return f"database {path} cannot be written by uid {os.geteuid()} ({exc}): the server must write it"
    if primary in (5, 6):  # SQLITE_BUSY, SQLITE_LOCKED
        return f"database {path} is locked by another process ({exc}); is another server running on it?"
    return f"database {path}: {exc}"
