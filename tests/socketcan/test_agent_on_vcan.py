"""An agent configured as on a vehicle (`kind = "bus"`, `socketcan`, `vcan0`) answers
a real server over loopback from frames the real drive's replay puts on vcan0; the
answer equals numpy on the very frames that were sent."""

from __future__ import annotations

import asyncio
import time

import can
import cantools
import numpy as np
import pytest

from oodida.agent.config import load_agent_config
from oodida.agent.main import run_agent
from oodida.client.protocol import AnalystClient
from oodida.wire.messages import AssignmentSpec, WindowSpec
from tests.credentials import ANALYST_SECRET, plain_config, secret_file
from tests.helpers import DBC
from tests.socketcan.helpers import CHANNEL, replay_onto


def _speeds(sent: list[can.Message]) -> np.ndarray:
    """SPEED as cantools (the reference) decodes it from the frames sent."""
    db = cantools.database.load_file(str(DBC), strict=False)
    message = db.get_message_by_name("SPEED")
    return np.array(
        [message.decode(bytes(m.data),
                        decode_choices=False)["SPEED"] for m in sent if m.arbitration_id == message.frame_id],
        dtype=np.float64,
    )


@pytest.mark.timeout(100)
async def test_agent_on_socketcan_vcan0_answers_from_the_replayed_frames(
        tmp_path, sender: can.BusABC, start_server) -> None:
    config_path = tmp_path / "agent.toml"
    server_config = plain_config(tmp_path, vehicles=("vcan-car",))

    server = await start_server(server_config)
    config_path.write_text(
        'vehicle = "vcan-car"\n\n'
        f'[server]\nhost = "127.0.0.1"\nport = {server.port}\nsecret_file = "{secret_file(tmp_path)}"\n'
        'plain = true\nstatus_interval = 0.2\n\n'
        '[[sources]]\nkind = "bus"\ninterface = "socketcan"\nchannel = "vcan0"\n'
        f'dbc = "{DBC}"\nsignals = ["SPEED"]\nkernel_filters = true\n'
    )
    stop_agent = asyncio.Event()
    agent = asyncio.create_task(run_agent(load_agent_config(config_path), stop_agent))
    client = await AnalystClient.connect("127.0.0.1", server.port, ANALYST_SECRET, identity="analyst")
    try:
        await _until(client, lambda v: v.status is not None and v.status.sources[0].state == "running")
        # 10 s of the drive at 5x real time: paced as a bus is, every id on it
        sent = await asyncio.to_thread(replay_onto, sender, seconds=10.0, speed=5.0)
        speeds = _speeds(sent)
        await _until(client, lambda v: v.status.frames >= speeds.size)
        spec = AssignmentSpec(
            signals=["SPEED"], window=WindowSpec(amount=3600.0, kind="latest"), iterations=1,
            on_board=["count", "mean", "min", "max"], deadline=30,
        )
        submitted = await client.submit(spec)
        items = [r async for r in client.results(submitted.assignment, follow=True)]
        status = (await client.status()).vehicles[0].status
    finally:
        await client.close()
        stop_agent.set()
        await agent
    assert speeds.size > 300 and len(sent) > 10 * speeds.size  # SPEED comes at about 40 Hz
    assert status.sources[0].name.endswith(f"CAN bus socketcan:{CHANNEL}, filtered")
    # The kernel dropped every frame of the other ids: the agent received the SPEED
    # frames only, and had none it could not decode.
    assert status.frames == speeds.size
    assert status.unknown_frames == 0 and status.malformed_frames == 0

    report, end = items[0], items[-1]
    assert end.state == "done" and len(items) == 2
    assert report.status == "complete"
    result = report.vehicles["vcan-car"]
    assert result.ok and result.samples == {"SPEED": speeds.size}
    assert result.value["count"]["SPEED"] == speeds.size
    assert result.value["mean"]["SPEED"] == pytest.approx(np.mean(speeds), rel=1e-12)
    assert result.value["min"]["SPEED"] == speeds.min() and result.value["max"]["SPEED"] == speeds.max()
    assert report.fleet["mean"]["SPEED"] == pytest.approx(np.mean(speeds), rel=1e-12)
    assert 0 < np.mean(speeds) < 150  # km/h, on a highway


async def _until(client: AnalystClient, ready, timeout: float = 30.0) -> None:
    """Until the one vehicle is connected and `ready(vehicle)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        vehicles = (await client.status()).vehicles
        if vehicles and vehicles[0].status is not None and ready(vehicles[0]):
            return
        assert time.monotonic() < deadline, f"not ready within {timeout} s: {vehicles}"
        await asyncio.sleep(0.1)
