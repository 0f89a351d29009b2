"""Real local fleets (server and agent processes on loopback) for the tests, described
once per module and started by the one `fleet` fixture in tests/conftest.py.

A module that uses `fleet` says what it needs with a module-level `FLEET = FleetSpec(...)`
(the fixture reads it through `request.module`, as pytest's docs show for module-level
settings); what is the same everywhere (a fresh folder, start, wait, stop at teardown)
is written here once instead of in each module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oodida.testing import LocalFleet
from tests.helpers import eventually, run


async def wait_sources(client: Any, fleet: LocalFleet, state: str = "ended", timeout: float = 60.0) -> None:
    """Until every agent reports all its sources in `state` (e.g. a replay that ran out)."""
    async def all_there() -> bool:
        status = await client.status()
        done = {
            v.vehicle
            for v in status.vehicles
            if v.status is not None and v.status.sources and all(s.state == state for s in v.status.sources)
        }
        assert set(fleet.vehicle_ids) <= done, f"sources not {state}: {status.vehicles}"  # shown if it lasts
        return True

    await eventually(all_there, timeout, what=f"every agent's sources to be {state}", interval=0.1)


def _ready(fleet: LocalFleet, *, replayed: bool, vehicles: list[str] | None = None) -> None:
    async def ready() -> None:
        client = await fleet.client()
        try:
            await fleet.wait_connected(client, vehicles) if vehicles is not None else await fleet.wait_connected(client)
            if replayed:
                await wait_sources(client, fleet)
        finally:
            await client.close()

    run(ready(), timeout=90)


def start_connected(fleet: LocalFleet) -> None:
    """Start the fleet and wait until every agent is connected to the server."""
    fleet.start()
    _ready(fleet, replayed=False)


def start_replayed(fleet: LocalFleet) -> None:
    """Start the fleet and wait until every agent has replayed its log to the end,
    so their buffers hold exactly the data the tests compute with numpy."""
    fleet.start()
    _ready(fleet, replayed=True)


def start_first_agent(fleet: LocalFleet) -> None:
    """The server and only the first agent: the others have credentials and never answer."""
    fleet.start_server()
    fleet.start_agent(0)
    _ready(fleet, replayed=False, vehicles=[fleet.vehicle_ids[0]])


@dataclass(frozen=True)
class FleetSpec:
    """What a module's fleet is: LocalFleet's options, how it starts, and what to do first."""

    name: str  # the temporary folder's prefix
    start: Callable[[LocalFleet], None] = start_connected
    options: dict[str, Any] = field(default_factory=dict)
    kind: type[LocalFleet] = LocalFleet
    prepare: Callable[[LocalFleet, Path], None] | None = None  # keys, modules: before the start
    needs: Callable[[], None] | None = None  # may skip (no browser): before anything starts

    @classmethod
    def of(cls, name: str, start: Callable[[LocalFleet], None] = start_connected, **options: Any) -> FleetSpec:
        return cls(name=name, start=start, options=options)
