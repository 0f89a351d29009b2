"""The agent's SQLite outbox, on real files: order, restarts, limits, bad disks."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from oodida.agent.config import ConfigError, load_agent_config
from oodida.agent.outbox import Outbox
from oodida.analytics.arrays import to_wire
from oodida.testing import data_dir, free_port
from oodida.wire.codec import decode_payload, encode_payload
from oodida.wire.messages import Result
from tests.helpers import eventually


def result(assignment: int, iteration: int, value: object = None, **extra: object) -> Result:
    return Result(
        assignment=assignment, iteration=iteration, vehicle="car-1", ok=True, code_hash="builtin:0.1",
        value=iteration * 1.5 if value is None else value, **extra,
    )


def keys(outbox: Outbox) -> list[tuple[int, int]]:
    return [(r.assignment, r.iteration) for r in outbox.pending()]


def test_pending_is_oldest_first_and_an_ack_deletes(tmp_path):
    outbox = Outbox(tmp_path / "o.sqlite3")
    for i in (3, 1, 2):
        outbox.put(result(7, i))
    outbox.put(result(5, 9))
    assert keys(outbox) == [(7, 3), (7, 1), (7, 2), (5, 9)]
    assert (7, 1) in outbox and len(outbox) == 4
    outbox.ack((7, 1))
    outbox.ack((99, 99))  # an ack for nothing held is harmless
    assert keys(outbox) == [(7, 3), (7, 2), (5, 9)]
    assert (7, 1) not in outbox
    rows = sqlite3.connect(tmp_path / "o.sqlite3")
    outbox.close()
    assert rows.execute("SELECT assignment, iteration FROM results ORDER BY seq").fetchall() == [(7, 3), (7, 2), (5, 9)]


def test_results_survive_a_reopen_bit_for_bit(tmp_path):
    path = tmp_path / "o.sqlite3"
    array = to_wire(np.arange(12, dtype=np.float32).reshape(3, 4))
    original = [result(1, 1, value={"mean": 2.5, "hist": array}), result(1, 2, samples={"SPEED": 40}), result(2, 1)]
    outbox = Outbox(path)
    for r in original:
        outbox.put(r)
    outbox.ack((1, 2))
    outbox.close()
    again = Outbox(path)
    assert len(again) == 2 and (1, 1) in again and (1, 2) not in again
    assert [encode_payload(r) for r in again.pending()] == [encode_payload(original[0]), encode_payload(original[2])]
    again.close()


def test_the_value_stored_is_the_wire_cbor_of_the_result(tmp_path):
    outbox = Outbox(tmp_path / "o.sqlite3")
    r = result(4, 2)
    outbox.put(r)
    (blob,) = outbox.db.execute("SELECT value FROM results").fetchone()
    assert blob == encode_payload(r) and decode_payload(blob) == r
    outbox.close()


def test_a_second_result_for_a_key_keeps_the_first(tmp_path, caplog):
    outbox = Outbox(tmp_path / "o.sqlite3")
    outbox.put(result(1, 1, value=1.0))
    outbox.put(result(1, 1, value=2.0))
    assert [r.value for r in outbox.pending()] == [1.0]
    assert "already holds the result of 1/1; the first is kept" in caplog.text
    outbox.close()


def test_past_max_results_the_oldest_is_dropped_said_and_counted(tmp_path, caplog):
    path = tmp_path / "o.sqlite3"
    outbox = Outbox(path, max_results=3)
    with caplog.at_level(logging.ERROR, logger="oodida.agent.outbox"):
        for i in range(1, 6):
            outbox.put(result(8, i))
    assert keys(outbox) == [(8, 3), (8, 4), (8, 5)]
    assert outbox.dropped == 2
    assert "outbox full (max_results = 3): dropped the oldest result, assignment 8 iteration 1" in caplog.text
    assert "assignment 8 iteration 2" in caplog.text and "2 dropped so far" in caplog.text
    outbox.close()
    again = Outbox(path, max_results=3)  # the count is the file's, not the process's
    assert again.dropped == 2 and keys(again) == [(8, 3), (8, 4), (8, 5)]
    again.close()


def test_past_max_bytes_the_oldest_go_but_the_newest_stays(tmp_path, caplog):
    big = to_wire(np.zeros(1000, dtype=np.float64))  # about 8 kB each
    outbox = Outbox(tmp_path / "o.sqlite3", max_bytes=20_000)
    for i in range(1, 5):
        outbox.put(result(2, i, value=big))
    assert keys(outbox) == [(2, 3), (2, 4)] and outbox.size <= 20_000
    assert "outbox full (max_bytes = 20000): dropped the oldest result, assignment 2 iteration 1" in caplog.text
    huge = to_wire(np.zeros(5000, dtype=np.float64))  # alone above the limit: kept, the rest dropped
    outbox.put(result(2, 5, value=huge))
    assert keys(outbox) == [(2, 5)] and outbox.dropped == 4
    outbox.close()


def fill_the_disk(outbox: Outbox) -> int:
    """A real SQLITE_FULL from now on: the file may not grow past its pages."""
    pages = outbox.db.execute("PRAGMA page_count").fetchone()[0]
    outbox.db.execute(f"PRAGMA max_page_count = {pages}")
    return pages


def test_a_full_disk_keeps_results_in_memory_and_writes_them_when_space_returns(tmp_path, caplog):
    path = tmp_path / "o.sqlite3"
    outbox = Outbox(path)
    outbox.put(result(1, 1))
    pages = fill_the_disk(outbox)
    blob = to_wire(np.ones(4096, dtype=np.float64))  # needs new pages
    outbox.put(result(1, 2, value=blob))
    outbox.put(result(1, 3, value=blob))
    assert "database or disk is full" in caplog.text and "held in memory until it can: 1/2" in caplog.text
    assert outbox.unsaved == 2 and "database or disk is full" in (outbox.error or "")
    assert keys(outbox) == [(1, 1), (1, 2), (1, 3)]  # still sent, from memory
    outbox.ack((1, 2))  # acknowledged while held in memory: gone without touching the disk
    assert outbox.retry() is False and outbox.unsaved == 1
    said = caplog.text.count("cannot write")
    # a retry of the same is not said again
    assert outbox.retry() is False and caplog.text.count("cannot write") == said
    outbox.db.execute(f"PRAGMA max_page_count = {pages * 1000}")
    assert outbox.retry() is True
    assert outbox.unsaved == 0 and outbox.error is None
    assert "writable again" in caplog.text
    outbox.close()
    again = Outbox(path)
    assert keys(again) == [(1, 1), (1, 3)]
    again.close()


def test_the_disks_refusal_is_forgotten_once_nothing_waits_in_memory(tmp_path):
    """`error` says why results wait in memory: acknowledged, none waits, no error."""
    outbox = Outbox(tmp_path / "o.sqlite3")
    fill_the_disk(outbox)
    outbox.put(result(1, 1, value=to_wire(np.ones(4096, dtype=np.float64))))
    assert outbox.unsaved == 1 and outbox.error is not None
    outbox.ack((1, 1))  # the server took it straight from memory
    assert outbox.unsaved == 0 and outbox.error is None and len(outbox) == 0
    outbox.close()


def test_the_next_put_after_a_full_disk_writes_the_held_ones_first_in_order(tmp_path):
    outbox = Outbox(tmp_path / "o.sqlite3")
    pages = fill_the_disk(outbox)
    blob = to_wire(np.ones(4096, dtype=np.float64))
    for i in (1, 2):
        outbox.put(result(3, i, value=blob))
    outbox.db.execute(f"PRAGMA max_page_count = {pages * 1000}")
    outbox.put(result(3, 3))
    assert outbox.unsaved == 0
    assert outbox.db.execute("SELECT iteration FROM results ORDER BY seq").fetchall() == [(1,), (2,), (3,)]
    outbox.close()


@pytest.mark.parametrize("garbage", [b"this is not an SQLite file at all" * 100,
                                     b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_corrupt_file_at_start_is_moved_aside_and_a_new_one_started(tmp_path, caplog, garbage):
    path = tmp_path / "o.sqlite3"
    path.write_bytes(garbage)
    outbox = Outbox(path)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("o.sqlite3.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    assert f"outbox {path} is unusable" in caplog.text and f"moved aside to {aside[0]}" in caplog.text
    outbox.put(result(1, 1))
    assert keys(outbox) == [(1, 1)]
    outbox.close()


def test_the_readable_results_of_a_corrupt_file_are_kept(tmp_path, caplog):
    """A damaged page costs the results on it: the others are read back, row by row,
    into the new file (and the damaged file stays aside for a post-mortem)."""
    path = tmp_path / "o.sqlite3"
    outbox = Outbox(path, max_results=30)
    originals = [result(1, i, value=to_wire(np.full(250, i, dtype=np.float64))) for i in range(1, 34)]  # 2 kB each
    for r in originals:
        outbox.put(r)
    assert outbox.dropped == 3
    outbox.close()
    size = path.stat().st_size
    with open(path, "r+b") as f:  # scribble over one leaf page
        f.seek(size - 3 * 4096 + 100)
        f.write(bytes(range(256)) * 12)
    again = Outbox(path)
    assert "integrity check" in caplog.text and "moved aside" in caplog.text
    kept = again.pending()
    assert 20 <= len(kept) < 30, [r.iteration for r in kept]
    by_key = {(r.assignment, r.iteration): encode_payload(r) for r in originals}
    assert all(encode_payload(r) == by_key[(r.assignment, r.iteration)] for r in kept)
    assert [r.iteration for r in kept] == sorted(r.iteration for r in kept)  # still oldest first
    assert f"{len(kept)} result(s) read back from the file moved aside" in caplog.text
    assert again.dropped == 3  # the count goes on
    again.close()
    reopened = Outbox(path)
    assert [r.iteration for r in reopened.pending()] == [r.iteration for r in kept]  # on disk, not only in memory
    reopened.close()


def test_another_programs_database_is_moved_aside_not_written_into(tmp_path, caplog):
    path = tmp_path / "o.sqlite3"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE accounts (name TEXT)")
    other.commit()
    other.close()
    Outbox(path).close()
    assert "a database of something else (tables accounts)" in caplog.text
    assert any(p.name.startswith("o.sqlite3.corrupt-") for p in tmp_path.iterdir())


REPO = Path(__file__).resolve().parents[2]


def unprivileged() -> list[str]:
    """The command prefix that runs a process as a uid file modes apply to: root
    reads and writes anything, so as root the process becomes 65534 (setpriv)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("as root, needs setpriv(1) to run the agent as an unprivileged uid")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def world_dir(prefix: str) -> Path:
    """A scratch folder others may traverse (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


def test_an_unreadable_file_at_start_is_moved_aside():
    as_user = unprivileged()
    folder = world_dir("oodida-outbox-")
    try:
        state = folder / "state"
        state.mkdir(mode=0o777)
        state.chmod(0o777)
        path = state / "o.sqlite3"
        Outbox(path).close()
        path.chmod(0)  # and owned by root: nobody but root reads it
        snippet = f"from oodida.agent.outbox import Outbox\nOutbox({str(path)!r}).close()\n"
        proc = subprocess.run([*as_user, sys.executable, "-c", snippet], cwd=REPO, check=False, capture_output=True,
                              text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert f"outbox {path} is unusable" in proc.stderr and "moved aside to" in proc.stderr
        assert any(p.name.startswith("o.sqlite3.corrupt-") for p in state.iterdir())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_read_only_state_directory_stops_the_agent_with_exit_2():
    """`oodida agent` whose outbox folder it cannot write: a configuration error."""
    as_user = unprivileged()
    folder = world_dir("oodida-outbox-")
    try:
        state = folder / "state"
        state.mkdir(mode=0o555)
        state.chmod(0o555)
        config = folder / "agent.toml"
        data = data_dir()
        secret = folder / "vehicle.secret"  # the agent's own (0600, its uid): the outbox must be what stops it
        secret.write_text("vehicle-secret\n")
        secret.chmod(0o600)
        if os.geteuid() == 0:
            os.chown(secret, 65534, 65534)
        config.write_text(textwrap.dedent(f"""
            vehicle = "car-1"
            [server]
            secret_file = "{secret}"
            plain = true
            port = {free_port()}
            [[sources]]
            kind = "log"
            path = "{data / 'rav4-2017-comma2k19.log'}"
            dbc = "{data / 'toyota_rav4_2017.dbc'}"
            signals = ["SPEED"]
            [outbox]
            path = "state/outbox.sqlite3"
        """))
        config.chmod(0o644)
        proc = subprocess.run([*as_user, sys.executable, "-m", "oodida", "agent", "--config", str(config)], check=False,
                              cwd=REPO, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 2, proc.stderr
        assert f"the outbox directory {state} is not writable (Permission denied)" in proc.stderr
        assert not (state / "outbox.sqlite3").exists()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_second_agent_on_the_same_file_is_refused_not_moved_aside(tmp_path):
    path = tmp_path / "o.sqlite3"
    first = Outbox(path)
    first.put(result(1, 1))
    with pytest.raises(ConfigError, match="is in use by another agent"):
        Outbox(path)
    assert keys(first) == [(1, 1)] and not any("corrupt" in p.name for p in tmp_path.iterdir())
    first.close()


async def test_put_and_ack_interleaved_on_the_event_loop(tmp_path):
    """Tasks put results and the uplink acknowledges them, interleaved on one loop
    (and a thread now and then): what is left is exactly what was not acknowledged."""
    outbox = Outbox(tmp_path / "o.sqlite3")

    async def task(a: int) -> None:
        for i in range(1, 41):
            outbox.put(result(a, i))
            await asyncio.sleep(0)

    async def acker() -> None:
        for i in range(1, 41, 2):
            for a in range(1, 6):
                await eventually(lambda key=(a, i): key in outbox, what=f"result {(a, i)} in the outbox", interval=0)
                outbox.ack((a, i))

    await asyncio.gather(*(task(a) for a in range(1, 6)), acker(),
                         asyncio.to_thread(lambda: [outbox.put(result(9, i)) for i in range(1, 21)]))
    expected = {(a, i) for a in range(1, 6) for i in range(2, 41, 2)} | {(9, i) for i in range(1, 21)}
    assert set(keys(outbox)) == expected and len(outbox) == len(expected)
    assert [k for k in keys(outbox) if k[0] == 3] == [(3, i) for i in range(2, 41, 2)]  # each task's own order
    outbox.close()


def test_a_sigkill_right_after_put_loses_nothing(tmp_path):
    """A real process puts, prints, and is killed before it could close anything."""
    path = tmp_path / "o.sqlite3"
    script = textwrap.dedent(f"""
        import os, signal, sys
        from oodida.agent.outbox import Outbox
        from oodida.wire.messages import Result
        box = Outbox({str(path)!r})
        for i in range(1, 6):
            box.put(Result(assignment=1, iteration=i, vehicle="car-1", ok=True, code_hash="builtin:0.1", value=i))
        box.ack((1, 1))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=60, check=False)
    assert proc.returncode == -9
    outbox = Outbox(path)
    assert keys(outbox) == [(1, 2), (1, 3), (1, 4), (1, 5)]
    outbox.close()


def test_the_config_puts_the_outbox_next_to_it_or_in_systemds_state_directory(tmp_path, monkeypatch):
    config = tmp_path / "etc" / "agent.toml"
    config.parent.mkdir()
    secret = tmp_path / "vehicle.secret"
    secret.write_text("vehicle-secret\n")
    secret.chmod(0o600)
    config.write_text(textwrap.dedent(f"""
        vehicle = "car-1"
        [server]
        secret_file = "{secret}"
        plain = true
        [[sources]]
        kind = "log"
        path = "drive.log"
        dbc = "car.dbc"
        [outbox]
        max_results = 50
    """))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    loaded = load_agent_config(config)
    assert loaded.outbox.path == str(tmp_path / "etc" / "outbox.sqlite3") and loaded.outbox.max_results == 50
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    assert load_agent_config(config).outbox.path == str(tmp_path / "state" / "outbox.sqlite3")
    assert load_agent_config(config).sources[0].path == str(tmp_path / "etc" / "drive.log")  # inputs stay put
    assert loaded.outbox.synchronous == "FULL"
    config.write_text(config.read_text() + 'synchronous = "OFF"\n')
    with pytest.raises(ConfigError, match=r"Invalid enum value 'OFF' - at `\$.outbox.synchronous`"):
        load_agent_config(config)


def test_the_log_shrinks_back_after_a_backlog_written_at_once(tmp_path):
    """Results held in memory while the disk was full are written in one transaction,
    which grows the write-ahead log by all of them; it is cut back to a few MB at the
    next checkpoint, not kept at its largest for the life of the file."""
    path = tmp_path / "o.sqlite3"
    outbox = Outbox(path, synchronous="NORMAL")
    pages = fill_the_disk(outbox)
    big = to_wire(np.zeros(16_000, dtype=np.float64))  # 128 kB each
    for i in range(1, 101):
        outbox.put(result(1, i, value=big))
    assert outbox.unsaved == 100
    outbox.db.execute(f"PRAGMA max_page_count = {pages * 10_000}")
    assert outbox.retry()
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size > 12 * 1024 * 1024  # the backlog, in one go
    for i in range(1, 101):
        outbox.ack((1, i))
    outbox.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    outbox.put(result(2, 1))  # the first write after a checkpoint restarts the log, and cuts it
    assert wal.stat().st_size <= 4 * 1024 * 1024
    outbox.close()
