"""What the tests in tests/client share (moved out of conftest.py, so that test modules
import a helper module, not a conftest)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from oodida.testing import LocalFleet

REPO = Path(__file__).resolve().parents[2]


STEER = "STEER_ANGLE_SENSOR.STEER_ANGLE"


PARAMS: dict[str, Any] = {
    "bins": {"count": 6, "range": [0.0, 120.0]},
    "q": [0.1, 0.5, 0.9],
}


METHODS = ["count", "mean", "min", "max", "variance", "histogram", "quantiles"]


KMEANS = {"k": 2, "features": ["SPEED", STEER]}  # k-means is iterative: an assignment of its own


def env_of(fleet: LocalFleet) -> dict[str, str]:
    """What an analyst's shell has: the credential file and the server's address."""
    return {**os.environ, "OODIDA_CREDENTIALS": str(fleet.analyst_credentials),
            "OODIDA_SERVER": f"127.0.0.1:{fleet.port}"}


def oodida(fleet: LocalFleet, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oodida", *args], env=env_of(fleet), capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)
