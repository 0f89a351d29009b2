"""What the tests in tests/socketcan share (moved out of conftest.py, so that test modules
import a helper module, not a conftest)."""

from __future__ import annotations

import socket
import threading
import time

import can

from oodida.hw.replay import LogReplay
from tests.helpers import LOG

CHANNEL = "vcan0"


SKIP_REASON = "needs SocketCAN vcan0 (run inside UML via tests/integration/test_socketcan.py)"


def _vcan0_missing() -> str | None:
    """Why a raw CAN socket cannot be bound to vcan0 here, or None if it can."""
    if not hasattr(socket, "AF_CAN"):
        return "this Python has no AF_CAN"
    try:
        with socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW) as probe:
            probe.bind((CHANNEL,))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


_MISSING = _vcan0_missing()


def replay_onto(bus: can.BusABC, *, seconds: float, speed: float) -> list[can.Message]:
    """Send the first `seconds` of the drive's can0 frames on `bus` through the
    project's own replay (paced at `speed`); returns what was sent, in order."""
    replay = LogReplay(LOG, channel="can0", speed=speed)
    sent = []
    end = None
    for message in replay.frames(threading.Event()):
        end = message.timestamp + seconds if end is None else end
        if message.timestamp > end:
            break
        message.channel = None  # the log's "can0" is not this bus's name
        bus.send(message, timeout=5)
        sent.append(message)
    replay.close()
    return sent


def receive(bus: can.BusABC, count: int, timeout: float) -> list[can.Message]:
    """Up to `count` frames, or what arrived before `timeout` seconds of silence-or-not."""
    got: list[can.Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        message = bus.recv(timeout=0.2)
        if message is not None:
            got.append(message)
    return got
