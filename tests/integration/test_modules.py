"""Analysts' modules with real processes: on board in every agent's sandbox, off
board in the server's, and a hostile module that costs nothing but its own result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from oodida.client.protocol import RequestFailed
from oodida.testing import LocalFleet
from oodida.wire.messages import AssignmentSpec, ModuleSource, WindowSpec
from tests.fleets import FleetSpec, start_replayed

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPEEDING = ModuleSource(name="speeding.py", source=(EXAMPLES / "speeding.py").read_text())
HOSTILE = ModuleSource(
    name="hostile.py",
    # through an alias the compile check cannot follow, so the vehicles must refuse it at run time
    source=("import numpy as np\n\ndef on_board(window, params, state):\n    mods = [np]\n"
            "    return mods[0].load('/etc/passwd')\n"),
)
SLOW = ModuleSource(name="slow.py", source="def on_board(window, params, state):\n    while True:\n        pass\n")


FLEET = FleetSpec.of("modules", start_replayed, vehicles=3, speed=0.0, loop=False, offsets=[0.0, 20.0, 40.0],
                     signals=["SPEED"], agent_sandbox={"call_timeout": 2.0})


async def follow(fleet: LocalFleet, spec: AssignmentSpec):
    client = await fleet.client()
    try:
        submitted = await client.submit(spec)
        items = [r async for r in client.results(submitted.assignment, follow=True)]
        status = await client.status()
        return items, status
    finally:
        await client.close()


async def test_on_board_and_off_board_modules_compute_exactly(fleet, decoded_log):
    spec = AssignmentSpec(
        signals=["SPEED"], window=WindowSpec(amount=100.0, kind="latest"), iterations=2,
        on_board_module=SPEEDING, off_board_module=SPEEDING, params={"limit": 65.0}, deadline=30,
    )
    items, _ = await follow(fleet, spec)
    reports, end = items[:-1], items[-1]
    assert end.state == "done" and len(reports) == 2
    t, v = decoded_log["series"]["SPEED.SPEED"]
    parts = [v[t >= decoded_log["first"] + off] for off in (0.0, 20.0, 40.0)]
    every = np.concatenate(parts)
    import hashlib

    digest = hashlib.sha256(SPEEDING.source.encode()).hexdigest()
    for report in reports:
        assert report.status == "complete"
        for vehicle, part in zip(fleet.vehicle_ids, parts, strict=True):
            r = report.vehicles[vehicle]
            assert r.ok and r.code_hash == digest
            assert r.value == {"samples": part.size, "over": int((part > 65.0).sum()), "top": float(part.max())}
        assert report.fleet["samples"] == every.size
        assert report.fleet["share_over"] == pytest.approx((every > 65.0).sum() / every.size, rel=1e-12)
    assert reports[0].fleet["trend"] is None and reports[1].fleet["trend"] == 0.0  # state carried to iteration 2


async def test_a_hostile_module_gets_its_rule_in_the_results_and_everything_goes_on(fleet):
    spec = AssignmentSpec(
        signals=["SPEED"], window=WindowSpec(amount=5.0, kind="latest"), iterations=1,
        on_board_module=HOSTILE, deadline=20,
    )
    items, status = await follow(fleet, spec)
    report = items[0]
    assert report.status == "failed"
    for vehicle in fleet.vehicle_ids:
        r = report.vehicles[vehicle]
        assert not r.ok and r.error.startswith("forbidden attribute: numpy.load is not available")
    slow = AssignmentSpec(
        signals=["SPEED"], window=WindowSpec(amount=5.0, kind="latest"), iterations=1,
        on_board_module=SLOW, deadline=20,
    )
    items, status = await follow(fleet, slow)
    for vehicle in fleet.vehicle_ids:
        assert items[0].vehicles[vehicle].error.startswith("timeout: the call took longer than 2 s")
    assert len(status.vehicles) == 3
    items, _ = await follow(fleet, AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=5.0, kind="latest"),
                                            on_board=["count"]))
    assert items[0].status == "complete"  # agents and server go on serving


async def test_a_module_that_breaks_the_policy_is_refused_at_submit_with_every_problem(fleet):
    bad = ModuleSource(name="bad.py",
                       source="import os\n\ndef on_board(window, params, state):\n    return open('x')\n")

    client = await fleet.client()
    try:
        with pytest.raises(RequestFailed) as err:
            await client.submit(AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1.0),
                                               on_board_module=bad))
    finally:
        await client.close()
    assert "bad.py: line 1: forbidden import: os" in err.value.reason
    assert "bad.py: line 4: forbidden name: open" in err.value.reason


def test_check_and_try_from_the_command_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import socket\n\ndef on_board(window, params, state):\n    return 1\n")
    out = subprocess.run([sys.executable, "-m", "oodida", "check", str(EXAMPLES / "speeding.py"), str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f"{bad}:1: forbidden import: socket is not allowed" in out.stdout
    data = Path(__file__).resolve().parents[2] / "data"
    tried = subprocess.run(
        [sys.executable, "-m", "oodida", "try", str(EXAMPLES / "speeding.py"), "--json",
         "--log", str(data / "rav4-2017-comma2k19.log"), "--dbc", str(data / "toyota_rav4_2017.dbc"),
         "--channel", "can0", "--signals", "SPEED", "--window", "10s", "--param", "limit=65"],
        capture_output=True, text=True, timeout=120,
    )
    assert tried.returncode == 0, tried.stderr
    import json

    result = json.loads(tried.stdout)
    assert result["ok"] and result["window"]["samples"]["SPEED"] > 0
    assert result["value"]["samples"] == result["window"]["samples"]["SPEED"]


async def test_nan_in_a_module_result_is_kept_and_flagged_for_the_analyst(fleet):
    nan = ModuleSource(name="nan.py", source="def on_board(window, params, state):\n    return {'x': float('nan')}\n")
    spec = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1.0, kind="latest"), on_board_module=nan)
    items, _ = await follow(fleet, spec)
    for vehicle in fleet.vehicle_ids:
        r = items[0].vehicles[vehicle]
        assert r.ok and r.flags == ["nan at $.x"]
        assert r.value["x"] != r.value["x"]  # NaN itself arrives
