"""The real drive replayed onto vcan0, through the kernel's CAN stack: what a
vehicle's agent would see on a live bus, frame for frame, and the kernel's own
filters (the agent's `kernel_filters`) dropping every id the DBC does not need."""

from __future__ import annotations

import socket
import struct
import threading

import can

from oodida.hw.dbc import SignalDecoder
from oodida.hw.sources import BusSource
from tests.helpers import DBC
from tests.socketcan.helpers import CHANNEL, receive, replay_onto

# Big enough for every frame of a burst even if the reader falls behind: a dropped
# frame must mean a bug, never a slow guest. (Root may exceed rmem_max; UML runs as root.)
SO_RCVBUFFORCE = 33
RECEIVE_BUFFER = 64 << 20


def _frame(message: can.Message) -> tuple[int, bool, int, bytes]:
    return (message.arbitration_id, message.is_extended_id, message.dlc, bytes(message.data))


def test_a_replay_of_the_real_log_arrives_on_vcan0_frame_for_frame(sender: can.BusABC) -> None:
    with can.Bus(interface="socketcan", channel=CHANNEL, ignore_config=True) as receiver:
        receiver.socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        sent = replay_onto(sender, seconds=5.0, speed=0)
        assert len(sent) > 4_000  # 5 s of a real car's powertrain bus
        got = receive(receiver, len(sent), timeout=60)
    assert len(got) == len(sent)
    assert [_frame(m) for m in got] == [_frame(m) for m in sent]
    assert {m.channel for m in got} == {CHANNEL}
    assert all(got[i].timestamp <= got[i + 1].timestamp for i in range(len(got) - 1))  # kernel receive times


def _kernel_filter(filters: list[dict]) -> bytes:
    """struct can_filter[] for CAN_RAW_FILTER, written from the kernel's documentation
    rather than by python-can, so the test does not check python-can against itself."""
    packed = b""
    for f in filters:
        flag = socket.CAN_EFF_FLAG if f.get("extended") else 0
        # the EFF bit in the mask makes the frame format part of the match
        packed += struct.pack("=II", f["can_id"] | flag, f["can_mask"] | socket.CAN_EFF_FLAG)
    return packed


def test_kernel_filters_from_the_dbc_drop_every_other_id(sender: can.BusABC) -> None:
    decoder = SignalDecoder(DBC, ["SPEED"])
    filters = decoder.can_filters()
    wanted = decoder.frame_ids
    with (
        socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW) as raw,
        BusSource("socketcan", CHANNEL, can_filters=filters) as source,
        can.Bus(interface="socketcan", channel=CHANNEL, ignore_config=True) as unfiltered,
    ):
        raw.setsockopt(socket.SOL_CAN_RAW, socket.CAN_RAW_FILTER, _kernel_filter(filters))
        raw.bind((CHANNEL,))
        for bus in (raw, unfiltered.socket):
            bus.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        sent = replay_onto(sender, seconds=5.0, speed=0)
        # A frame outside the DBC, of an id next to a wanted one, and an extended
        # frame with a wanted id's number: the kernel must drop all three.
        strangers = [
            can.Message(arbitration_id=0x7FF, data=b"\x01", is_extended_id=False),
            can.Message(arbitration_id=min(wanted) + 1, data=b"\x02", is_extended_id=False),
            can.Message(arbitration_id=min(wanted), data=b"\x03", is_extended_id=True),
        ]
        for message in strangers:
            sender.send(message, timeout=5)
        expected = [_frame(m) for m in sent if m.arbitration_id in wanted]
        others = [m for m in sent if m.arbitration_id not in wanted]
        assert expected and len(others) > 10 * len(expected)

        # Everything reached the bus: an unfiltered socket saw every frame.
        everything = receive(unfiltered, len(sent) + len(strangers), timeout=30)
        assert [_frame(m) for m in everything] == [_frame(m) for m in [*sent, *strangers]]

        # The kernel queued only the wanted frames on the filtered raw socket:
        # drained without blocking, nothing else is there.
        raw.setblocking(False)
        queued = []
        while True:
            try:
                data = raw.recv(16)
            except BlockingIOError:
                break
            can_id, dlc = struct.unpack_from("=IB", data)
            queued.append((can_id & socket.CAN_SFF_MASK, bool(can_id & socket.CAN_EFF_FLAG), dlc, data[8 : 8 + dlc]))
        assert queued == expected

        # The agent's own source, with the same filters, hears exactly the same.
        got = list(_take(source, len(expected) + 1, timeout=3))
        assert [_frame(m) for m in got] == expected


def _take(source: BusSource, count: int, timeout: float):
    """At most `count` frames from a source, stopping after `timeout` seconds."""
    stop = threading.Event()
    timer = threading.Timer(timeout, stop.set)
    timer.start()
    try:
        for n, frame in enumerate(source.frames(stop), 1):
            yield frame
            if n >= count:
                return
    finally:
        timer.cancel()
