"""The signal catalogue with real processes: agents that replayed the drive report
every signal of the DBC, with the DBC's units and ranges and the rates they measured,
and the server refuses a wrong signal name at submit with the catalogue's close
matches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cantools
import pytest

from oodida.client.protocol import RequestFailed
from oodida.testing import LocalFleet
from oodida.wire.messages import AssignmentSpec, WindowSpec
from tests.fleets import FleetSpec, start_replayed
from tests.helpers import DBC, eventually

pytestmark = pytest.mark.integration

OFFSETS = [0.0, 20.0]


# two agents recording every signal of the DBC, replayed once from 0 and 20 s in
FLEET = FleetSpec.of("catalogue", start_replayed, vehicles=2, speed=0.0, loop=False, offsets=OFFSETS)


async def _catalogue(fleet):
    client = await fleet.client()
    try:
        return await client.signals(), await client.signals("car-2")
    finally:
        await client.close()


async def test_every_dbc_signal_is_in_the_catalogue_with_its_unit_and_range(fleet) -> None:
    everyone, one = await _catalogue(fleet)
    db = cantools.database.load_file(str(DBC), strict=False)
    dbc = {f"{m.name}.{s.name}": s for m in db.messages for s in m.signals}
    assert [v.vehicle for v in everyone.vehicles] == ["car-1", "car-2"]
    assert all(v.connected for v in everyone.vehicles)
    assert [v.vehicle for v in one.vehicles] == ["car-2"]
    for vehicle in everyone.vehicles:
        got = {s.name: s for s in vehicle.signals}
        assert set(got) == set(dbc)
        for name, signal in dbc.items():
            assert got[name].unit == (signal.unit or ""), name
            assert got[name].minimum == (None if signal.minimum is None else float(signal.minimum)), name
            assert got[name].maximum == (None if signal.maximum is None else float(signal.maximum)), name
    assert {s.name: s.unit for s in one.vehicles[0].signals}["SPEED.SPEED"] == "km/h"


async def _settled(fleet, decoded_log, timeout: float = 30.0):
    """The catalogue once every vehicle's counts are those of its whole replay: the
    agent sends small changes at most every `refresh` (10 status intervals, 5 s here)."""
    async def settled():
        everyone, _ = await _catalogue(fleet)
        done = all(
            {s.name: s.samples for s in v.signals}.get(name)
            == int((t >= decoded_log["first"] + offset).sum())
            for v, offset in zip(everyone.vehicles, OFFSETS, strict=True)
            for name, (t, _) in decoded_log["series"].items()
        )
        return everyone if done else None

    return await eventually(settled, timeout, what="every vehicle's counts to be those of its whole replay",
                            interval=0.5)


async def test_each_vehicle_reports_the_rate_it_measured_on_its_part_of_the_log(fleet, decoded_log) -> None:
    everyone = await _settled(fleet, decoded_log)
    for vehicle, offset in zip(everyone.vehicles, OFFSETS, strict=True):
        got = {s.name: s for s in vehicle.signals}
        measured = 0
        for name, (t, _) in decoded_log["series"].items():
            t = t[t >= decoded_log["first"] + offset]
            assert got[name].samples == t.size, (vehicle.vehicle, name)
            if t.size >= 2 and t[-1] > t[0]:
                assert got[name].rate == pytest.approx((t.size - 1) / (t[-1] - t[0]), rel=1e-9), name
                measured += 1
            else:
                assert got[name].rate is None
        assert measured > 100  # most signals of the drive come at a rate
        never = set(got) - set(decoded_log["series"])  # in the DBC, never on this bus
        assert all(got[n].rate is None and got[n].samples == 0 for n in never)


async def _submit(fleet, signals):
    spec = AssignmentSpec(signals=signals, window=WindowSpec(amount=1.0, kind="latest"), deadline=10.0)

    client = await fleet.client()
    try:
        return await client.submit(spec)
    finally:
        await client.close()


async def test_a_wrong_signal_name_is_refused_at_submit_with_close_matches(fleet) -> None:
    with pytest.raises(RequestFailed) as refused:
        await _submit(fleet, ["SPEED", "VEHICLE_SPEED"])
    reason = refused.value.reason
    assert "'VEHICLE_SPEED'" in reason and "SPEED.SPEED" in reason
    assert "'SPEED'" not in reason  # the bare name of a catalogued signal is fine
    assert refused.value.code == "refused"


async def test_bare_and_full_names_of_catalogued_signals_are_accepted(fleet) -> None:
    submitted = await _submit(fleet, ["SPEED", "STEER_ANGLE_SENSOR.STEER_RATE"])
    assert submitted.vehicles == ["car-1", "car-2"]


def _cli(fleet, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OODIDA_CREDENTIALS": str(fleet.analyst_credentials)}
    return subprocess.run(
        [sys.executable, "-m", "oodida", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_oodida_signals_lists_unit_range_rate_and_vehicles(fleet) -> None:
    done = _cli(fleet, "signals")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:-1]}
    speed = rows["SPEED.SPEED"]
    assert "km/h" in speed and "0 … 250" in speed and "Hz" in speed and speed.endswith("all 2")
    assert done.stdout.splitlines()[-1].startswith(f"{len(rows)} signals on 2 vehicles")

    as_json = _cli(fleet, "signals", "--vehicle", "car-1", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    speed = {s["name"]: s for s in data["signals"]}["SPEED.SPEED"]
    assert speed["unit"] == "km/h" and speed["minimum"] == 0.0 and speed["maximum"] == 250.0
    assert list(speed["vehicles"]) == ["car-1"] and speed["vehicles"]["car-1"]["rate"] > 10
    assert data["vehicles"][0]["vehicle"] == "car-1" and "T" in data["vehicles"][0]["reported"]


def test_oodida_signals_for_an_unknown_vehicle_says_so_and_exits_1(fleet) -> None:
    done = _cli(fleet, "signals", "--vehicle", "car-9")
    assert done.returncode == 1
    assert "car-9" in done.stderr and "Traceback" not in done.stderr


def test_submit_of_a_wrong_signal_from_the_cli_exits_1_with_the_suggestion(fleet) -> None:
    done = _cli(fleet, "submit", "--signals", "VEHICLE_SPEED", "--window", "latest:1s")
    assert done.returncode == 1
    assert "SPEED.SPEED" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.timeout(90)
async def test_a_signal_one_vehicle_lacks_is_its_error_result_not_a_crash(tmp_path) -> None:
    """car-1 records SPEED and STEER_RATE, car-2 only SPEED: a submit of STEER_RATE to
    both is accepted (car-1 serves it) and car-2 answers with an error, still serving."""
    steer = "STEER_ANGLE_SENSOR.STEER_RATE"
    mixed = LocalFleet(tmp_path, vehicles=2, speed=0.0, loop=False)
    with mixed:
        mixed.start_server()
        mixed.start_agent(0, signals=["SPEED", steer])
        mixed.start_agent(1, signals=["SPEED"])
        spec = AssignmentSpec(signals=[steer], window=WindowSpec(amount=1.0, kind="latest"), deadline=10.0)

        client = await mixed.client()
        try:
            await mixed.wait_connected(client)

            async def both_listed() -> bool:
                vehicles = (await client.signals()).vehicles
                return len(vehicles) >= 2 and all(len(v.signals) for v in vehicles)

            await eventually(both_listed, 60, what="both cars to list their signals")
            submitted = await client.submit(spec)
            items = [r async for r in client.results(submitted.assignment, follow=True)]
            status = await client.status()
        finally:
            await client.close()
    report = items[0]
    assert report.vehicles["car-1"].ok
    assert not report.vehicles["car-2"].ok and steer in report.vehicles["car-2"].error
    assert len(status.vehicles) == 2  # both agents still serving


def test_a_reader_may_read_the_catalogue(fleet) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "oodida", "signals", "--vehicle", "car-1", "--credentials",
         str(fleet.reader_credentials)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "SPEED.SPEED" in done.stdout
