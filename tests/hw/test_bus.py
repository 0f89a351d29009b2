"""BusSource over python-can's virtual interface: real log frames, sent and received."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import can
import pytest

from oodida.hw.dbc import SignalDecoder
from oodida.hw.errors import SourceError
from oodida.hw.sources import BusSource


@pytest.fixture
def channel() -> str:
    """A virtual channel of this test's own, so tests never hear each other."""
    return f"oodida-test-{uuid.uuid4().hex}"


@pytest.fixture
def sender(channel: str) -> Iterator[can.BusABC]:
    bus = can.Bus(interface="virtual", channel=channel, ignore_config=True)
    yield bus
    bus.shutdown()


def _frames(log_messages: list[can.Message], count: int) -> list[can.Message]:
    return [m for m in log_messages if m.channel == "can0"][:count]


def test_frames_sent_on_the_bus_come_out_of_the_source(
    channel: str, sender: can.BusABC, log_messages: list[can.Message]
) -> None:
    sent = _frames(log_messages, 500)
    with BusSource("virtual", channel) as source:
        for message in sent:
            sender.send(message)
        got = list(itertools.islice(source.frames(threading.Event()), len(sent)))
    assert [(m.arbitration_id, bytes(m.data)) for m in got] == [
        (m.arbitration_id, bytes(m.data)) for m in sent
    ]
    assert {m.channel for m in got} == {channel}


def test_decoder_filters_keep_only_wanted_frames(
    channel: str, sender: can.BusABC, log_messages: list[can.Message], dbc_path: Path
) -> None:
    decoder = SignalDecoder(dbc_path, ["SPEED"])
    sent = _frames(log_messages, 500)
    expected = [bytes(m.data) for m in sent if m.arbitration_id in decoder.frame_ids]
    assert 0 < len(expected) < len(sent)
    with BusSource("virtual", channel, can_filters=decoder.can_filters()) as source:
        for message in sent:
            sender.send(message)
        got = list(itertools.islice(source.frames(threading.Event()), len(expected)))
    # Filtered-out frames were queued first: had they passed, they would be here.
    assert [bytes(m.data) for m in got] == expected
    assert {m.arbitration_id for m in got} == {0xB4}


def test_stop_is_honoured_promptly_on_a_silent_bus(channel: str, sender: can.BusABC) -> None:
    stop = threading.Event()
    with BusSource("virtual", channel) as source:
        received = threading.Event()

        def read() -> None:
            for _ in source.frames(stop):
                received.set()

        reader = threading.Thread(target=read)
        reader.start()
        sender.send(can.Message(arbitration_id=0xB4, data=bytes(8), is_extended_id=False))
        assert received.wait(timeout=2)  # the reader is now back in recv, on a silent bus
        stopped_at = time.monotonic()
        stop.set()
        reader.join(timeout=2)
        assert not reader.is_alive()
        assert time.monotonic() - stopped_at < 0.25  # one 0.1 s recv, plus slack
        assert not source.ended
    assert source.ended


def test_closed_source_refuses_to_run(channel: str) -> None:
    source = BusSource("virtual", channel)
    source.close()
    source.close()  # twice is fine
    with pytest.raises(SourceError, match="closed"):
        next(source.frames(threading.Event()))


def test_unknown_interface_is_a_source_error_listing_the_known(channel: str) -> None:
    with pytest.raises(SourceError, match=r"no-such-interface.*virtual"):
        BusSource("no-such-interface", channel)


def test_describe_names_interface_and_channel(channel: str) -> None:
    with BusSource("virtual", channel, can_filters=[{"can_id": 1, "can_mask": 0x7FF}]) as source:
        assert source.describe() == f"CAN bus virtual:{channel}, filtered"
