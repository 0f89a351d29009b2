"""A real local fleet (server + agent processes on loopback) for integration tests."""

from __future__ import annotations

import asyncio
import time

from oodida.testing import LocalFleet
from tests.conftest import run


def start_connected(fleet: LocalFleet) -> None:
    """Start the fleet and wait until every agent is connected to the server."""
    fleet.start()

    async def ready() -> None:
        client = await fleet.client()
        try:
            await fleet.wait_connected(client)
        finally:
            await client.close()

    run(ready(), timeout=90)


def start_replayed(fleet: LocalFleet) -> None:
    """Start the fleet and wait until every agent has replayed its log to the end,
    so their buffers hold exactly the data the tests compute with numpy."""
    fleet.start()

    async def ready() -> None:
        client = await fleet.client()
        try:
            await fleet.wait_connected(client)
            await wait_sources(client, fleet)
        finally:
            await client.close()

    run(ready(), timeout=90)


async def wait_sources(client, fleet: LocalFleet, state: str = "ended", timeout: float = 60.0) -> None:
    """Until every agent reports all its sources in `state` (e.g. a replay that ran out)."""
    deadline = time.monotonic() + timeout
    while True:
        status = await client.status()
        done = {
            v.vehicle
            for v in status.vehicles
            if v.status is not None and v.status.sources and all(s.state == state for s in v.status.sources)
        }
        if set(fleet.vehicle_ids) <= done:
            return
        assert time.monotonic() < deadline, f"sources not {state} within {timeout} s: {status.vehicles}"
        await asyncio.sleep(0.1)
