"""A whole agent with a CAN log replay and a GPS receiver on a real pty, built from a
TOML config, answering a real server over loopback: GPS and CAN signals in one
window, and an unplugged receiver that the agent reports and outlives."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from oodida.agent.config import load_agent_config
from oodida.agent.main import run_agent
from oodida.client.protocol import AnalystClient
from oodida.wire.messages import AssignmentSpec, WindowSpec
from tests.credentials import ANALYST_SECRET, plain_config, secret_file
from tests.helpers import DATA, eventually
from tests.hw.nmea_text import RECORDING
from tests.hw.pty_receiver import PtyReceiver


def agent_toml(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f"""
vehicle = "gps-car"
[server]
port = {port}
secret_file = "{secret_file(tmp_path)}"
plain = true
status_interval = 0.1

[[sources]]
kind = "log"
path = "{DATA / "rav4-2017-comma2k19.log"}"
dbc = "{DATA / "toyota_rav4_2017.dbc"}"
channel = "can0"
signals = ["SPEED"]
loop = true

[[sources]]
kind = "gps"
port = "{tmp_path / "gps0"}"
baudrate = 9600
reopen_min = 0.05
reopen_max = 0.2
""")
    return path


@pytest.mark.timeout(90)
async def test_agent_serves_gps_and_can_signals_and_outlives_an_unplugged_receiver(
        tmp_path: Path, start_server) -> None:
    server_config = plain_config(tmp_path, vehicles=("gps-car",), database="s.sqlite3")
    lines = RECORDING.read_bytes().splitlines(keepends=True)

    async def gps_source(client: AnalystClient, predicate) -> object:
        async def matched() -> object:
            status = await client.status()
            if status.vehicles and status.vehicles[0].status is not None:
                gps = [s for s in status.vehicles[0].status.sources if "GPS" in s.name]
                if gps and predicate(gps[0]):
                    return status.vehicles[0].status
            return None

        return await eventually(matched, 20, what="the GPS source to match")

    def gone_frames(status) -> int:
        return next(s.frames for s in status.sources if "GPS" in s.name)

    server = await start_server(server_config)
    config = load_agent_config(agent_toml(tmp_path, server.port))
    receiver = PtyReceiver(tmp_path / "gps0", lines, interval=0.005)
    stop_agent = asyncio.Event()
    agent = asyncio.create_task(run_agent(config, stop_agent))
    client = await AnalystClient.connect("127.0.0.1", server.port, ANALYST_SECRET, identity="analyst")
    try:
        await gps_source(client, lambda s: s.state == "running")
        receiver.start()
        with_data = await gps_source(client, lambda s: s.frames >= 40)
        spec = AssignmentSpec(
            signals=["GPS.SPEED", "SPEED"], window=WindowSpec(amount=10, unit="samples", kind="latest"),
            iterations=2, on_board=["count", "mean", "max"], deadline=20,
        )
        submitted = await client.submit(spec)
        both = [r async for r in client.results(submitted.assignment, follow=True)]

        receiver.vanish()  # the receiver is unplugged while the agent runs
        gone = await gps_source(client, lambda s: s.state == "failed")
        spec = AssignmentSpec(
            signals=["SPEED"], window=WindowSpec(amount=5, unit="samples", kind="latest"),
            iterations=1, on_board=["count"], deadline=20,
        )
        submitted = await client.submit(spec)
        can_only = [r async for r in client.results(submitted.assignment, follow=True)]

        receiver = PtyReceiver(tmp_path / "gps0", lines, interval=0.005).start()  # plugged back in
        back = await gps_source(client, lambda s: s.state == "running" and s.frames > gone_frames(gone))
    finally:
        await client.close()
        stop_agent.set()
        await agent
        receiver.close()
    assert "GPS.SPEED" in with_data.signals and "GPS.LATITUDE" in with_data.signals
    fix = with_data.position  # the newest GPS fix rides in the status: a drive through Gothenburg
    assert fix is not None and 57.6 < fix.latitude < 57.8 and 11.8 < fix.longitude < 12.1, fix
    assert both[-1].state == "done"
    for report in both[:-1]:
        assert report.status == "complete"
        r = report.vehicles["gps-car"]
        assert r.ok, r.error
        assert r.samples == {"GPS.SPEED": 10, "SPEED": 10}
        assert 0 <= r.value["mean"]["GPS.SPEED"] <= r.value["max"]["GPS.SPEED"] <= 70.01  # km/h, the drive's range
        assert 0 < r.value["mean"]["SPEED"] < 150  # km/h on a highway
    gps = next(s for s in gone.sources if "GPS" in s.name)
    assert "device gone" in (gps.error or "")
    assert [s.state for s in gone.sources if "GPS" not in s.name] == ["running"]  # the CAN replay is untouched
    assert can_only[0].status == "complete" and can_only[0].vehicles["gps-car"].samples == {"SPEED": 5}
    gps = next(s for s in back.sources if "GPS" in s.name)
    assert gps.error is None
