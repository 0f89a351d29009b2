"""The server over real loopback sockets, driven by hand-written peers.

No agents here: the test plays the vehicles itself, so it can send duplicates,
garbage and messages the wrong role may not send, and see exactly what comes back.
"""

from __future__ import annotations

import asyncio
import struct

import cbor2
import pytest

from oodida.client.protocol import AnalystClient, RequestFailed
from oodida.link import HandshakeRefused, connect
from oodida.wire import Role
from oodida.wire.messages import (
    AssignmentSpec,
    Error,
    Result,
    ResultAck,
    Task,
    WindowSpec,
)
from tests.servers import AT, VT, mean_partial, vehicle


async def test_bad_secret_is_refused_with_a_reason(server):
    with pytest.raises(HandshakeRefused, match="wrong proof"):
        await connect("127.0.0.1", server.port, role=Role.VEHICLE, identity="v1", secret="wrong-secret")
    with pytest.raises(HandshakeRefused, match="is for role vehicle, not analyst"):
        await connect("127.0.0.1", server.port, role=Role.ANALYST, identity="v1", secret=VT)


async def test_fleet_mean_over_hand_played_vehicles_and_duplicate_stored_once(server):
    cars = {name: await vehicle(server, name) for name in ("v1", "v2")}
    analyst = await AnalystClient.connect("127.0.0.1", server.port, AT, identity="analyst")
    spec = AssignmentSpec(
        signals=["SPEED"], window=WindowSpec(amount=1, kind="latest"), iterations=1, on_board=["mean"]
    )
    submitted = await analyst.submit(spec)
    assert submitted.vehicles == ["v1", "v2"]
    sums = {"v1": (2, 10.0), "v2": (3, 30.0)}
    for name, channel in cars.items():
        task = await channel.recv()
        assert isinstance(task, Task) and task.assignment == submitted.assignment and task.iteration == 1
        r = Result(
            assignment=task.assignment, iteration=1, vehicle=name, ok=True, code_hash="h",
            value=mean_partial(*sums[name]),
        )
        await channel.send(r)
        await channel.send(r)  # delivered twice
        acks = [await channel.recv(), await channel.recv()]
        assert all(isinstance(a, ResultAck) and a.iteration == 1 for a in acks)
    reports = [item async for item in analyst.results(submitted.assignment, follow=True)]
    report, end = reports[0], reports[-1]
    assert end.state == "done"
    assert report.status == "complete"
    assert report.fleet["mean"]["SPEED"] == pytest.approx(40.0 / 5)
    assert len(server.store.results(submitted.assignment, 1)) == 2
    await analyst.close()


async def test_vehicle_that_never_answers_is_reported_missing_at_the_deadline(server):
    v1 = await vehicle(server, "v1")
    v2 = await vehicle(server, "v2")
    analyst = await AnalystClient.connect("127.0.0.1", server.port, AT, identity="analyst")
    spec = AssignmentSpec(
        signals=["SPEED"], window=WindowSpec(amount=1, kind="latest"), iterations=1,
        on_board=["mean"], deadline=0.5,
    )
    submitted = await analyst.submit(spec)
    task = await v1.recv()
    await v1.send(
        Result(assignment=task.assignment, iteration=1, vehicle="v1", ok=True, code_hash="h",
               value=mean_partial(1, 5.0))
    )
    await v2.close()  # v2 vanishes mid-iteration
    reports = [item async for item in analyst.results(submitted.assignment, follow=True)]
    report = reports[0]
    assert report.status == "partial"
    assert report.missing == ["v2"]
    assert report.fleet["mean"]["SPEED"] == 5.0
    assert reports[-1].state == "done"
    await analyst.close()


async def test_bad_messages_get_reasons_and_the_connection_goes_on(server):
    v1 = await vehicle(server, "v1")
    # an analyst's request from a vehicle: refused, connection stays
    await v1.send_bytes(_raw_frame({"type": "status", "id": 1}))
    reply = await v1.recv()
    assert isinstance(reply, Error) and "not allowed from a vehicle" in reply.reason
    # garbage inside a well-formed frame
    await v1.send_bytes(struct.pack(">I", 3) + b"\xff\xff\xff")
    reply = await v1.recv()
    assert isinstance(reply, Error) and "CBOR" in reply.reason
    # someone else's result
    await v1.send(Result(assignment=1, iteration=1, vehicle="v2", ok=True, code_hash="h"))
    reply = await v1.recv()
    assert isinstance(reply, Error) and "may not send results of v2" in reply.reason
    # still served: a status update is accepted and shows up
    analyst = await AnalystClient.connect("127.0.0.1", server.port, AT, identity="analyst")
    status = await analyst.status()
    assert [v.vehicle for v in status.vehicles] == ["v1"]
    await analyst.close()


def _raw_frame(obj) -> bytes:
    payload = cbor2.dumps(obj)
    return struct.pack(">I", len(payload)) + payload


async def test_unauthenticated_garbage_is_disconnected_and_server_survives(server):
    junks = (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", _raw_frame({"type": "submit", "id": 1}),
             b"GET / HTTP/1.1\r\n\r\n")
    for junk in junks:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(junk)
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(), 5)  # server closes after at most an error frame
        assert len(rest) < 4096
        writer.close()
        await writer.wait_closed()
    analyst = await AnalystClient.connect("127.0.0.1", server.port, AT, identity="analyst")
    await analyst.status()
    await analyst.close()


async def test_submit_refusals_say_why(server):
    analyst = await AnalystClient.connect("127.0.0.1", server.port, AT, identity="analyst")
    spec = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1), on_board=["mean"])
    with pytest.raises(RequestFailed, match="no vehicle is connected"):
        await analyst.submit(spec)
    await vehicle(server, "v1")
    with pytest.raises(RequestFailed, match="2 vehicles asked for, 1 connected"):
        await analyst.submit(AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1), vehicles=2))
    with pytest.raises(RequestFailed, match="median"):
        await analyst.submit(AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1), on_board=["median"]))
    with pytest.raises(RequestFailed, match="bins"):
        await analyst.submit(AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1), on_board=["histogram"]))
    with pytest.raises(RequestFailed, match="no assignment 99"):
        await analyst.cancel(99)
    await analyst.close()
