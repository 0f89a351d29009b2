"""The database check at start, on files made by SQLite itself: what it refuses, and
what it must not refuse (a live database whose WAL holds what the file does not yet)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from oodida.server.dbcheck import DatabaseUnusable, check_database, corruption
from oodida.server.store import Store


def _fill(db: sqlite3.Connection, rows: int = 3000) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB)")
    db.executemany("INSERT INTO t (v) VALUES (?)", [(os.urandom(100),) for _ in range(rows)])
    db.commit()


def test_a_new_database_and_a_healthy_one_pass(tmp_path):
    path = tmp_path / "s.sqlite3"
    assert check_database(path) is False  # missing: a new one will be made
    Store(path).close()
    assert check_database(path) is True


def test_a_database_whose_wal_holds_pages_the_file_has_not_yet_passes(tmp_path):
    """A server killed before a checkpoint leaves the file shorter than the database:
    SQLite replays the WAL; the check must not call that truncation."""
    path = tmp_path / "s.sqlite3"
    code = (
        "import sqlite3, os, sys\n"
        f"db = sqlite3.connect({str(path)!r}); db.execute('PRAGMA journal_mode=WAL')\n"
        "db.execute('PRAGMA wal_autocheckpoint=0')\n"
        "db.execute('CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)')\n"
        "db.executemany('INSERT INTO t (v) VALUES (?)', [(os.urandom(100),) for _ in range(5000)]); db.commit()\n"
        "os._exit(0)\n"  # no close, no checkpoint: as after a SIGKILL
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "s.sqlite3-wal").stat().st_size > path.stat().st_size
    assert check_database(path) is True


def test_a_cut_file_without_a_wal_is_truncated(tmp_path):
    path = tmp_path / "s.sqlite3"
    db = sqlite3.connect(path)
    _fill(db)
    db.close()
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 4096)
    with pytest.raises(DatabaseUnusable, match="truncated"):
        check_database(path)
    with open(path, "r+b") as f:
        f.truncate(size - 4096 - 100)
    with pytest.raises(DatabaseUnusable, match="not a whole number of its 4096-byte pages"):
        check_database(path)


def test_corruption_is_told_apart_from_other_database_errors(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 100)
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError) as caught:
        db.execute("SELECT * FROM sqlite_master").fetchall()
    db.close()
    assert corruption(caught.value) is not None
    full = sqlite3.OperationalError("database or disk is full")
    assert corruption(full) is None
    assert corruption(ValueError("malformed")) is None


def test_a_page_damaged_in_the_middle_is_found_by_the_quick_check_only(tmp_path):
    """`database_check = "header"` reads no page past the header: the damage is then
    met at run time (and the server stops, tests/integration/test_operator.py)."""
    path = tmp_path / "s.sqlite3"
    db = sqlite3.connect(path)
    _fill(db)
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 't'").fetchone()[0]
    db.close()
    with open(path, "r+b") as f:
        f.seek((root - 1) * 4096)
        f.write(b"\x55" * 4096)
    with pytest.raises(DatabaseUnusable, match=r"corrupt: the integrity check \(PRAGMA quick_check\)"):
        check_database(path)
    assert check_database(path, quick=False) is True
