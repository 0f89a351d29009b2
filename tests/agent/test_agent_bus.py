"""A whole agent reading a live python-can bus (the `virtual` interface, in process),
answering a real server over loopback: the same code as on a vehicle, minus the kernel."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import can
import numpy as np
import pytest

from oodida.agent.config import AgentConfig, BusSource, OutboxSettings, ServerLink
from oodida.agent.main import run_agent
from oodida.client.protocol import AnalystClient
from oodida.wire.messages import AssignmentSpec, WindowSpec
from tests.credentials import ANALYST_SECRET, plain_config, secret_file
from tests.helpers import DBC, LOG, eventually


def play(channel: str, stop: threading.Event) -> None:
    """Send the drive's can0 frames on a virtual bus, 10x real time, looping."""
    frames = [m for m in can.LogReader(str(LOG)) if m.channel == "can0"]
    with can.Bus(interface="virtual", channel=channel) as bus:
        while not stop.is_set():
            t0, start = frames[0].timestamp, time.monotonic()
            for m in frames:
                if stop.is_set():
                    return
                delay = (m.timestamp - t0) / 10 - (time.monotonic() - start)
                if delay > 0.001:
                    time.sleep(delay)
                bus.send(can.Message(arbitration_id=m.arbitration_id, data=m.data, timestamp=m.timestamp,
                                     is_extended_id=m.is_extended_id))


@pytest.mark.timeout(60)
async def test_agent_on_a_virtual_bus_answers_next_windows(tmp_path, start_server):
    channel = f"oodida-{uuid.uuid4().hex[:8]}"
    server_config = plain_config(tmp_path, vehicles=("bus-car",), database="s.sqlite3")

    server = await start_server(server_config)
    agent_config = AgentConfig(
        vehicle="bus-car",
        server=ServerLink(secret_file=secret_file(tmp_path), plain=True, port=server.port, status_interval=0.2),
        sources=[BusSource(interface="virtual", channel=channel, dbc=str(DBC), signals=["SPEED"])],
        outbox=OutboxSettings(path=str(tmp_path / "outbox.sqlite3")),
    )
    stop_agent = asyncio.Event()
    agent = asyncio.create_task(run_agent(agent_config, stop_agent))
    stop_player = threading.Event()
    player = threading.Thread(target=play, args=(channel, stop_player), daemon=True)
    player.start()
    client = await AnalystClient.connect("127.0.0.1", server.port, ANALYST_SECRET, identity="analyst")
    try:
        async def connected() -> bool:
            return bool((await client.status()).vehicles)

        await eventually(connected, 30, what="the agent to connect")
        spec = AssignmentSpec(
            signals=["SPEED"], window=WindowSpec(amount=20, unit="samples"), iterations=2,
            on_board=["count", "mean"], deadline=20,
        )
        submitted = await client.submit(spec)
        items = [r async for r in client.results(submitted.assignment, follow=True)]
        async def counted():  # the agent reports its counters every 0.2 s
            status = await client.status()
            return status if status.vehicles[0].status.frames else None

        status = await eventually(counted, 5, what="the agent to report the frames it read")
    finally:
        await client.close()
        stop_player.set()
        stop_agent.set()
        await agent
        player.join(5)
    assert items[-1].state == "done"
    for report in items[:-1]:
        assert report.status == "complete"
        r = report.vehicles["bus-car"]
        assert r.samples == {"SPEED": 20}
        assert 0 < r.value["mean"]["SPEED"] < 150  # km/h on a highway
    vehicle = status.vehicles[0].status
    assert vehicle.frames > 0
    # kernel-style filters: the bus only delivers ids the wanted signals live in
    assert vehicle.unknown_frames == 0
    assert np.isfinite(items[0].fleet["mean"]["SPEED"])
