"""The whole path with real processes: agents replay the real drive, the server runs
assignments over real TCP, and the fleet results equal numpy on the decoded log."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from oodida.client.protocol import RequestFailed
from oodida.testing import LocalFleet
from oodida.wire.messages import AssignmentSpec, WindowSpec
from tests.fleets import start_replayed

pytestmark = pytest.mark.integration

SPEED = "SPEED.SPEED"
STEER = "STEER_ANGLE_SENSOR.STEER_ANGLE"
OFFSETS = [0.0, 15.0, 30.0]
BINS = {"SPEED": {"count": 8, "range": [0.0, 80.0]}, STEER: [-10.0, -2.0, 0.0, 2.0, 10.0]}
Q = [0.1, 0.5, 0.9]


@pytest.fixture(scope="module")
def replayed_fleet(tmp_path_factory):
    """Three agents that replayed the drive once, as fast as possible, from 0, 15 and
    30 s in: their buffers then hold exactly what numpy sees from those offsets on."""
    fleet = LocalFleet(
        tmp_path_factory.mktemp("fleet"), vehicles=3, speed=0.0, loop=False, offsets=OFFSETS,
        signals=["SPEED", STEER],
    )
    with fleet:
        start_replayed(fleet)
        yield fleet


def expected(decoded_log, name: str) -> list[np.ndarray]:
    t, v = decoded_log["series"][name]
    return [v[t >= decoded_log["first"] + off] for off in OFFSETS]


async def test_fleet_statistics_equal_numpy_on_the_decoded_log(replayed_fleet, decoded_log):
    spec = AssignmentSpec(
        name="exact",
        signals=["SPEED", STEER],
        window=WindowSpec(amount=120.0, kind="latest"),
        iterations=2,
        on_board=["count", "mean", "variance", "std", "min", "max", "quantiles", "histogram", "last"],
        params={"bins": BINS, "q": Q},
        deadline=30.0,
    )

    client = await replayed_fleet.client()
    try:
        submitted = await client.submit(spec)
        items = [r async for r in client.results(submitted.assignment, follow=True)]
    finally:
        await client.close()
    reports, end = items[:-1], items[-1]
    assert end.state == "done" and [r.iteration for r in reports] == [1, 2]
    from oodida.commands.render import plain

    for report in reports:
        assert report.status == "complete" and report.missing == []
        fleet = plain(report.fleet)
        for asked, name in (("SPEED", SPEED), (STEER, STEER)):
            parts = expected(decoded_log, name)
            allv = np.concatenate(parts)
            assert fleet["count"][asked] == allv.size
            assert fleet["min"][asked] == allv.min() and fleet["max"][asked] == allv.max()
            assert fleet["mean"][asked] == pytest.approx(allv.mean(), rel=1e-12)
            assert fleet["variance"][asked] == pytest.approx(allv.var(), rel=1e-9)
            assert fleet["std"][asked] == pytest.approx(allv.std(), rel=1e-9)
            assert list(fleet["quantiles"][asked].values()) == np.quantile(allv, Q).tolist()
            bins = BINS["SPEED"] if asked == "SPEED" else BINS[STEER]
            edges = np.linspace(0, 80, 9) if isinstance(bins, dict) else np.array(bins)
            counts, _ = np.histogram(allv, bins=edges)
            assert fleet["histogram"][asked]["counts"] == counts.tolist()
            assert fleet["histogram"][asked]["below"] == int((allv < edges[0]).sum())
            assert fleet["histogram"][asked]["above"] == int((allv > edges[-1]).sum())
            for vehicle, part in zip(replayed_fleet.vehicle_ids, parts, strict=True):
                mine = plain(report.vehicles[vehicle].value)
                assert mine["count"][asked] == part.size
                assert mine["mean"][asked] == pytest.approx(part.mean(), rel=1e-12)
                assert report.vehicles[vehicle].samples[asked] == part.size


def test_submit_wait_json_prints_one_object_per_iteration(replayed_fleet):
    env = {**os.environ, "OODIDA_CREDENTIALS": str(replayed_fleet.analyst_credentials)}
    out = subprocess.run(
        [
            sys.executable, "-m", "oodida", "submit", "--json", "--wait",
            "--server", f"127.0.0.1:{replayed_fleet.port}",
            "--signals", "SPEED", "--window", "latest:10s", "--iterations", "3",
            "--on-board", "mean,max", "--count", "2", "--deadline", "20",
        ],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines[0]["vehicles"] == ["car-1", "car-2"]
    iterations = lines[1:]
    assert [it["iteration"] for it in iterations] == [1, 2, 3]
    for it in iterations:
        assert set(it["vehicles"]) == {"car-1", "car-2"}
        assert it["fleet"]["max"]["SPEED"] >= it["fleet"]["mean"]["SPEED"]
    status = subprocess.run(
        [sys.executable, "-m", "oodida", "status", "--json", "--server", f"127.0.0.1:{replayed_fleet.port}"],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert {v["vehicle"] for v in report["vehicles"]} == set(replayed_fleet.vehicle_ids)
    assert all(v["status"]["unknown_frames"] > 0 for v in report["vehicles"])  # counted, not fatal


async def test_a_signal_no_vehicle_has_is_refused_at_submit_and_every_agent_goes_on(replayed_fleet):
    # Since the signal catalogue the server refuses it at once instead of letting every
    # vehicle find out; a signal one vehicle lacks is still that vehicle's error result
    # (tests/integration/test_catalogue.py::test_a_signal_one_vehicle_lacks_is_its_error_result_not_a_crash).
    spec = AssignmentSpec(
        signals=["NO_SUCH_SIGNAL"], window=WindowSpec(amount=1.0, kind="latest"), iterations=1, deadline=10
    )

    client = await replayed_fleet.client()
    try:
        with pytest.raises(RequestFailed) as refused:
            await client.submit(spec)
        refused, status = refused.value, await client.status()
    finally:
        await client.close()
    assert refused.code == "refused" and "NO_SUCH_SIGNAL" in refused.reason
    assert len(status.vehicles) == 3  # every agent still serving


@pytest.mark.timeout(120)
async def test_next_windows_over_several_iterations_then_an_agent_dies(tmp_path, decoded_log):
    """Agents replay in (4x) real time; `next 2 s` windows cover 2 s of signal time
    each. After iteration 1, car-3 is killed: it is reported missing, the assignment
    still completes, on quorum, without waiting on the dead."""
    fleet = LocalFleet(tmp_path, vehicles=3, speed=4.0, loop=True, signals=["SPEED"])
    spec = AssignmentSpec(
        signals=["SPEED"], window=WindowSpec(amount=2.0), iterations=4, on_board=["count", "mean"],
        deadline=5.0,
    )
    with fleet:
        fleet.start()

        client = await fleet.client()
        try:
            await fleet.wait_connected(client)
            submitted = await client.submit(spec)
            reports = []
            async for item in client.results(submitted.assignment, follow=True):
                reports.append(item)
                if getattr(item, "iteration", None) == 1:
                    fleet.kill_agent("car-3")
            status = await client.status()
        finally:
            await client.close()
    iterations, end = reports[:-1], reports[-1]
    assert end.state == "done"
    assert [r.iteration for r in iterations] == [1, 2, 3, 4]
    first = iterations[0]
    assert first.status == "complete"
    for vehicle, r in first.vehicles.items():
        # SPEED comes at ~41.5 Hz: 2 s of signal time hold 82 or 83 samples
        assert 80 <= r.samples["SPEED"] <= 86, (vehicle, r.samples)
    for r in iterations[2:]:  # iteration 2 may have been sent before the kill landed
        assert r.missing == ["car-3"] and r.status == "partial"
        assert set(r.vehicles) == {"car-1", "car-2"}
        assert r.closed - r.started < spec.deadline + 2.0
    assert "car-3" not in {v.vehicle for v in status.vehicles}


async def test_cancel_and_results_from_the_command_line(replayed_fleet):
    """An open-ended assignment runs until `oodida cancel`; `oodida results` then
    replays every stored iteration and says how it ended."""
    env = {**os.environ, "OODIDA_CREDENTIALS": str(replayed_fleet.analyst_credentials)}
    server = ["--server", f"127.0.0.1:{replayed_fleet.port}"]
    spec = AssignmentSpec(
        signals=["SPEED"], window=WindowSpec(amount=1.0, kind="latest"), iterations=0, on_board=["count"]
    )

    client = await replayed_fleet.client()
    try:
        submitted = await client.submit(spec)
        async for item in client.results(submitted.assignment, follow=True):
            if item.iteration == 3:
                break
        assignment = submitted.assignment
    finally:
        await client.close()
    cancel = await asyncio.to_thread(subprocess.run,
        [sys.executable, "-m", "oodida", "cancel", str(assignment), "--json", *server],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert cancel.returncode == 0, cancel.stderr
    assert json.loads(cancel.stdout) == {"assignment": assignment, "state": "cancelled"}
    follow = await asyncio.to_thread(subprocess.run,
        [sys.executable, "-m", "oodida", "results", str(assignment), "--follow", *server],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert f"assignment {assignment}: cancelled" in follow.stdout
    assert follow.stdout.count(f"── assignment {assignment} · iteration") >= 3
    missing = await asyncio.to_thread(subprocess.run,
        [sys.executable, "-m", "oodida", "results", "9999", *server],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert missing.returncode == 1 and "no assignment 9999" in missing.stderr
