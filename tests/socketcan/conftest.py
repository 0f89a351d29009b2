"""Tests that need real SocketCAN: a vcan0 interface in this kernel.

They run inside user-mode Linux, booted by tests/integration/test_socketcan.py
(which creates vcan0 there first), or on any Linux host that has vcan0 up. Anywhere
else they skip, saying why; the UML test checks that none skipped in there.
"""

from __future__ import annotations

from collections.abc import Iterator

import can
import pytest

from tests.socketcan.helpers import _MISSING, CHANNEL, SKIP_REASON


@pytest.fixture(autouse=True)
def _needs_vcan0() -> None:
    if _MISSING is not None:
        pytest.skip(f"{SKIP_REASON}: {_MISSING}")


@pytest.fixture
def sender() -> Iterator[can.BusABC]:
    bus = can.Bus(interface="socketcan", channel=CHANNEL, ignore_config=True)
    yield bus
    bus.shutdown()
