"""A real local fleet for the analysts' client: three agents replaying the drive
(looped, twice as fast as it was driven), a TLS server, credential files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from oodida.testing import LocalFleet
from tests.integration.conftest import start_connected

REPO = Path(__file__).resolve().parents[2]
STEER = "STEER_ANGLE_SENSOR.STEER_ANGLE"
PARAMS: dict[str, Any] = {
    "bins": {"count": 6, "range": [0.0, 120.0]},
    "q": [0.1, 0.5, 0.9],
}
METHODS = ["count", "mean", "min", "max", "variance", "histogram", "quantiles"]
KMEANS = {"k": 2, "features": ["SPEED", STEER]}  # k-means is iterative: an assignment of its own


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    fleet = LocalFleet(
        tmp_path_factory.mktemp("client-fleet"), vehicles=3, speed=2.0, loop=True, offsets=[0.0, 20.0, 40.0],
        signals=["SPEED", STEER],
    )
    with fleet:
        start_connected(fleet)
        yield fleet


def env_of(fleet: LocalFleet) -> dict[str, str]:
    """What an analyst's shell has: the credential file and the server's address."""
    return {**os.environ, "OODIDA_CREDENTIALS": str(fleet.analyst_credentials),
            "OODIDA_SERVER": f"127.0.0.1:{fleet.port}"}


def oodida(fleet: LocalFleet, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oodida", *args], env=env_of(fleet), capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)
