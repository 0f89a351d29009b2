"""Fixtures for the hw tests: the real RAV4 log and DBC, parsed once per session."""

from __future__ import annotations

from pathlib import Path

import can
import cantools
import pytest
from cantools.database.can import Database

from tests.hw.paths import DBC, LOG


@pytest.fixture(scope="session")
def log_path() -> Path:
    return LOG


@pytest.fixture(scope="session")
def dbc_path() -> Path:
    return DBC


@pytest.fixture(scope="session")
def db() -> Database:
    database = cantools.database.load_file(DBC, strict=False)
    assert isinstance(database, Database)
    return database


@pytest.fixture(scope="session")
def log_messages() -> list[can.Message]:
    """Every frame of the log as python-can reads it: the reference for replay tests."""
    with can.LogReader(LOG) as reader:
        return list(reader)


@pytest.fixture(scope="session")
def can0_frames(log_messages: list[can.Message]) -> list[tuple[int, bytes]]:
    return [(m.arbitration_id, bytes(m.data)) for m in log_messages if m.channel == "can0"]


@pytest.fixture
def tiny_log(tmp_path: Path) -> Path:
    """Five frames on two channels over 0.4 s, with a repeated timestamp."""
    path = tmp_path / "tiny.log"
    path.write_text(
        "(100.000000) can0 0B4#0000000000000000\n"
        "(100.000000) can1 224#0102030405060708\n"
        "(100.100000) can0 025#0011223344556677\n"
        "(100.300000) can1 0B4#FFFFFFFFFFFFFFFF\n"
        "(100.400000) can0 0B4#00000000001D0B7A\n"
    )
    return path
