"""A real local fleet for the analysts' client: three agents replaying the drive
(looped, twice as fast as it was driven), a TLS server, credential files."""

from __future__ import annotations

import pytest

from tests.client.helpers import STEER
from tests.fleets import FleetSpec


@pytest.fixture(scope="module")
def fleet_spec() -> FleetSpec:
    """Each client test module's own fleet: three cars looping the drive at twice its speed."""
    return FleetSpec.of("client-fleet", vehicles=3, speed=2.0, loop=True, offsets=[0.0, 20.0, 40.0],
                        signals=["SPEED", STEER])
