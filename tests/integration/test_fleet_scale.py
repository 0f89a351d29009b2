"""The fleet-scale benchmark's path, small: hundreds of simulated vehicles over the
real protocol against a real server process; every result stored exactly once and
acknowledged, every vehicle still connected at the end, the fleet value exact."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VEHICLES, ITERATIONS = 300, 3


def test_hundreds_of_simulated_vehicles_every_result_stored_once_and_acknowledged(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fleet_scale.py"), "--sizes", str(VEHICLES), "--iterations",
         str(ITERATIONS), "--workers", "2", "--workdir", str(tmp_path), "--log-level", "warning"],
        capture_output=True, text=True, timeout=110, cwd=REPO,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert f"connected {VEHICLES}/{VEHICLES} (server counts {VEHICLES})" in text
    assert f"still connected after the assignment: {VEHICLES} (lost 0)" in text
    sent = VEHICLES * ITERATIONS
    assert f"results sent {sent}, acknowledged {sent}" in text
    assert f"statuses {{'complete': {ITERATIONS}}}" in text
    assert "check: fleet count, mean, min and max equal numpy's" in text
    db = sqlite3.connect(tmp_path / str(VEHICLES) / "server.sqlite3")
    try:
        rows = db.execute(
            "SELECT iteration, COUNT(*), COUNT(DISTINCT vehicle) FROM results GROUP BY iteration").fetchall()
        assert rows == [(i, VEHICLES, VEHICLES) for i in range(1, ITERATIONS + 1)]
        statuses = db.execute("SELECT status FROM iterations ORDER BY iteration").fetchall()
        assert statuses == [("complete",)] * ITERATIONS
    finally:
        db.close()
