"""Shared fixtures: where the recorded drive is, its decoded signals for checks, and
in-process servers that are stopped at teardown (whatever the test did)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from oodida.server.app import Server
    from oodida.server.config import ServerConfig
    from oodida.testing import LocalFleet
    from tests.fleets import FleetSpec

from tests.helpers import DATA, DBC, LOG, run  # noqa: F401 - also importable from here, as before


def pytest_addoption(parser: pytest.Parser) -> None:
    # here, not in tests/fuzz/conftest.py: pytest reads options only from the conftest
    # files it loads at start, and `pytest tests` does not load that one at start
    parser.addoption("--fuzz-report", default=None, help="append each fuzz test's counts (JSON lines) to this file")


@pytest.fixture(scope="module")
def fleet_spec(request: pytest.FixtureRequest) -> FleetSpec:
    """The module's `FLEET = FleetSpec(...)`; a directory's conftest.py may override this
    fixture to give all its modules one spec (each module still gets its own fleet)."""
    spec = getattr(request.module, "FLEET", None)
    if spec is None:
        pytest.fail(f"{request.module.__name__} uses the fleet fixture but has no FLEET = FleetSpec(...)")
    return spec


@pytest.fixture(scope="module")
def fleet(fleet_spec: FleetSpec, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """The module's real local fleet (tests/fleets.py), started once for the module and
    stopped after its last test, whatever happened."""
    spec = fleet_spec
    if spec.needs is not None:
        spec.needs()
    workdir = tmp_path_factory.mktemp(spec.name)
    made = spec.kind(workdir, **spec.options)
    if spec.prepare is not None:
        spec.prepare(made, workdir)
    try:
        spec.start(made)
        yield made
    finally:
        made.stop()


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


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL (tests/postgres.py); skips saying how to install it, or fails
    with OODIDA_REQUIRE_POSTGRES=1 (CI)."""
    from tests import postgres

    problem = postgres.problem()
    if problem is not None:
        if os.environ.get("OODIDA_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"OODIDA_REQUIRE_POSTGRES=1 but {problem}")
        pytest.skip(problem)
    with postgres.cluster() as url:
        yield url
