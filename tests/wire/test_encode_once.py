"""One task to a whole fleet is encoded once: `Connection.send(message, encoded=...)`
makes the same checks as `send(message)` and returns the bytes made once."""

from __future__ import annotations

import pytest

from oodida.wire.connection import Connection, Side, encode_message
from oodida.wire.errors import LocalProtocolError
from oodida.wire.messages import Role, Task, WindowSpec
from tests.wire.examples import handshake

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
    server, _ = handshake(Role.VEHICLE)
    server.max_frame = 1024
    big = Task(assignment=1, iteration=1, signals=["SPEED"], window=WindowSpec(amount=5), methods=["mean"],
               params={}, deadline=10.0, state="x" * 2000)
    with pytest.raises(LocalProtocolError, match="exceeds the maximum of 1024"):
        server.send(big, encoded=encode_message(big))


def test_encoding_in_cbor2_gives_the_very_bytes_of_the_python_walk():
    """Structs, enums and arrays are handed to cbor2 as they are (its default hook turns
    them into maps, values and typed arrays): the bytes must not change, or a stored
    value's bytes, and every peer's decoding, would."""
    import cbor2

    from oodida.wire.codec import _encode_default, encode_payload, encode_value, to_plain
    from oodida.wire.messages import IterationReport, VehicleReport
    from oodida.wire.values import NDArray
    from tests.wire.examples import ONE_OF_EACH

    report = IterationReport(
        id=1, assignment=1, iteration=2, iterations=3, status="complete",
        vehicles={f"v{i}": VehicleReport(ok=True, code_hash="h", value={"mean": [float(i), (1, 2)]}) for i in range(3)},
        missing=[], started=1.0, closed=2.0, fleet={"x": NDArray("<f8", (2,), b"\0" * 16)},
    )
    messages = [*ONE_OF_EACH.values(), report, TASK]
    assert len(messages) > 20
    for message in messages:
        assert encode_payload(message) == cbor2.dumps(to_plain(message), default=_encode_default), message
        value = getattr(message, "value", None) or getattr(message, "state", None)
        assert encode_value(value) == cbor2.dumps(to_plain(value), default=_encode_default)
