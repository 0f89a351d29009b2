"""The serial port over a real pseudo-terminal: bytes through pyserial, and a device
that vanishes turned into one `SourceError`, whatever pyserial raised."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from oodida.hw.errors import SourceError
from oodida.hw.serial_port import SerialPort
from tests.hw.nmea_text import line
from tests.hw.pty_receiver import PtyReceiver

GGA = line("GPGGA,073003.00,5742.53220,N,01158.47360,E,1,09,0.80,13.2,M,36.2,M,,")


def read_for(port: SerialPort, seconds: float) -> bytes:
    data = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data += port.read()
    return data


def test_reads_what_the_receiver_sends_and_fails_once_it_vanishes(tmp_path: Path) -> None:
    receiver = PtyReceiver(tmp_path / "gps0", [GGA]).start()
    port = SerialPort(str(tmp_path / "gps0"), 9600)
    port.open()
    try:
        data = read_for(port, 0.3)
        assert GGA in data
        receiver.vanish()
        with pytest.raises(SourceError, match="failed"):
            read_for(port, 2.0)
    finally:
        port.close()
        receiver.close()
    port.close()  # twice is fine
    assert not port.is_open


def test_a_read_with_nothing_sent_returns_empty_within_the_timeout(tmp_path: Path) -> None:
    receiver = PtyReceiver(tmp_path / "gps0", [])  # plugged in, silent
    port = SerialPort(str(tmp_path / "gps0"), read_timeout=0.05)
    port.open()
    try:
        started = time.monotonic()
        assert port.read() == b""
        assert time.monotonic() - started < 1.0
    finally:
        port.close()
        receiver.close()


def test_a_missing_device_is_a_source_error(tmp_path: Path) -> None:
    port = SerialPort(str(tmp_path / "nothing"))
    with pytest.raises(SourceError, match="cannot open serial .*nothing"):
        port.open()
    with pytest.raises(SourceError, match="not open"):
        port.read()
