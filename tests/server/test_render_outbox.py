"""What `oodida status` prints about a vehicle's outbox: dropped results, a refusing disk."""

from __future__ import annotations

from oodida.commands.render import render_status
from oodida.wire.messages import StatusReply, VehicleInfo, VehicleStatus


def status(**outbox: object) -> str:
    vehicle = VehicleStatus(frames=10, unknown_frames=0, malformed_frames=0, signal_time=1.0, sources=[],
                            signals=["SPEED"], pending_results=3, **outbox)
    info = VehicleInfo(vehicle="car-1", connected_at=0.0, address="127.0.0.1:1", status=vehicle)
    reply = StatusReply(id=1, server_time=2.0, assignments=[], vehicles=[info])
    return render_status(reply)


def test_dropped_results_and_the_disks_refusal_are_shown():
    text = status(outbox_dropped=2, outbox_error="cannot write outbox.sqlite3: database or disk is full (SQLITE_FULL)")
    assert "unsent 3" in text
    assert ("outbox: 2 result(s) dropped over its limits; cannot write outbox.sqlite3: database or disk is full"
            " (SQLITE_FULL)") in text


def test_a_healthy_outbox_adds_no_line():
    assert "outbox:" not in status()
    assert "outbox: 1 result(s) dropped over its limits\n" in status(outbox_dropped=1)
