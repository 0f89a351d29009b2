"""One task to a whole fleet is encoded once: `Connection.send(message, encoded=...)`
makes the same checks as `send(message)` and returns the bytes made once."""

from __future__ import annotations

import pytest

from tests.wire.examples import handshake
from wire.connection import Connection, Side, encode_message
from wire.errors import LocalProtocolError
from wire.messages import Role, Task, WindowSpec

TASK = Task(assignment=1, iteration=3, signals=["SPEED"], window=WindowSpec(amount=5), methods=["mean"],
            params={}, deadline=10.0, state={"k": [1.0, 2.0]})


def test_the_encoded_frame_is_what_send_would_write_and_the_vehicle_reads_the_task():
    server, client = handshake(Role.VEHICLE)
    frame = encode_message(TASK)
    assert frame == server.send(TASK)
    assert server.send(TASK, encoded=frame) is frame
    client.receive_data(frame)
    assert client.next_event() == TASK


def test_encoded_bytes_do_not_bypass_the_state_machine():
    frame = encode_message(TASK)
    analyst_side, _ = handshake(Role.ANALYST)
    with pytest.raises(LocalProtocolError, match="cannot send Task"):  # analysts get no tasks
        analyst_side.send(TASK, encoded=frame)
    fresh = Connection(Side.SERVER)
    with pytest.raises(LocalProtocolError, match="before the handshake"):  # nobody welcomed yet
        fresh.send(TASK, encoded=frame)


def test_an_encoded_frame_over_the_connections_maximum_is_refused():
    server = Connection(Side.SERVER, max_frame=1024)
    vehicle = Connection(Side.CLIENT, role=Role.VEHICLE)
    server.receive_data(vehicle.hello("v1", "token"))
    server.accept(server.next_event(), session="s")
    big = Task(assignment=1, iteration=1, signals=["SPEED"], window=WindowSpec(amount=5), methods=["mean"],
               params={}, deadline=10.0, state="x" * 2000)
    with pytest.raises(LocalProtocolError, match="exceeds the maximum of 1024"):
        server.send(big, encoded=encode_message(big))
