"""Shared fixtures: where the recorded drive is, its decoded signals for checks, and
in-process servers that are stopped at teardown (whatever the test did)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from oodida.server.app import Server
    from oodida.server.config import ServerConfig

T = TypeVar("T")
DATA = Path(__file__).resolve().parents[1] / "data"
LOG = DATA / "rav4-2017-comma2k19.log"
DBC = DATA / "toyota_rav4_2017.dbc"


def pytest_addoption(parser: pytest.Parser) -> None:
    # here, not in tests/fuzz/conftest.py: pytest reads options only from the conftest
    # files it loads at start, and `pytest tests` does not load that one at start
    parser.addoption("--fuzz-report", default=None, help="append each fuzz test's counts (JSON lines) to this file")


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Run a coroutine to completion with a hard timeout, from a synchronous test or
    fixture (one driving processes); an `async def test_...` awaits instead."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
async def start_server() -> AsyncIterator[Callable[[Path | ServerConfig], Awaitable[Server]]]:
    """`await start_server(path_or_config)`: a started in-process server (tests.servers.Started);
    every one started is stopped at teardown, also those the test stopped itself (a no-op)."""
    from tests.servers import started

    servers: list[Server] = []

    async def start(where: Path | ServerConfig) -> Server:
        server = await started(where)
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        await server.stop()


@pytest.fixture
async def server(start_server: Callable[[Path], Awaitable[Server]], tmp_path: Path) -> Server:
    """A started server with tests.credentials' plain config in tmp_path."""
    return await start_server(tmp_path)


@pytest.fixture(scope="session")
def decoded_log() -> dict[str, Any]:
    """Every can0 frame of the drive decoded by cantools itself (the reference),
    as {canonical signal: (timestamps, values)} plus the log's first timestamp."""
    import can
    import cantools
    import numpy as np

    db = cantools.database.load_file(str(DBC), strict=False)
    ids = {m.frame_id: m for m in db.messages}
    series: dict[str, tuple[list[float], list[float]]] = {}
    first = None
    with can.LogReader(str(LOG)) as reader:
        for msg in reader:
            if first is None:
                first = msg.timestamp
            if msg.channel != "can0" or msg.arbitration_id not in ids:
                continue
            m = ids[msg.arbitration_id]
            values = m.decode(bytes(msg.data), decode_choices=False)
            for name, value in values.items():
                t, v = series.setdefault(f"{m.name}.{name}", ([], []))
                t.append(msg.timestamp)
                v.append(float(value))
    return {
        "first": first,
        "series": {k: (np.array(t), np.array(v)) for k, (t, v) in series.items()},
    }
