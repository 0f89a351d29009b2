"""The GPS pump on a real pseudo-terminal: a drive's sentences become samples on the
host clock; noise, bad checksums and cut lines are counted, not fatal; a receiver
that is unplugged and plugged back in leaves a reported gap, and samples go on."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from oodida.agent.config import ConfigError, load_agent_config
from oodida.agent.gps import GpsPump
from oodida.agent.main import build_agent
from oodida.agent.store import SignalStore
from oodida.hw.nmea import NmeaDecoder
from oodida.hw.serial_port import SerialPort
from oodida.wire.messages import WindowSpec
from tests.credentials import secret_file
from tests.helpers import DATA
from tests.hw.nmea_text import GGA, RECORDING, RMC, line, reference
from tests.hw.pty_receiver import PtyReceiver, wait_for

LAST = WindowSpec(amount=100_000, unit="samples", kind="latest")


def series(store: SignalStore, name: str) -> tuple[np.ndarray, np.ndarray]:
    window = store.latest({name: name}, LAST)
    return window.series[name].t, window.series[name].v


@pytest.fixture
def pump(tmp_path: Path) -> Iterator[GpsPump]:
    store = SignalStore()
    pump = GpsPump("gps", SerialPort(str(tmp_path / "gps0")), NmeaDecoder(), store, reopen_min=0.05, reopen_max=0.2)
    yield pump
    pump.stop()


def test_a_drive_becomes_samples_with_the_right_values_on_the_host_clock(tmp_path: Path, pump: GpsPump) -> None:
    receiver = PtyReceiver(tmp_path / "gps0", RECORDING.read_bytes().splitlines(keepends=True), interval=0.003,
                           loop=False)
    try:
        pump.start()
        wait_for(lambda: pump.state == "running")
        before = time.time()
        receiver.start()
        wait_for(lambda: pump.frames == 180 and pump.decoder.unknown_frames == 182)  # the last line is a GSV
        after = time.time()
    finally:
        receiver.close()
    want = reference(RECORDING.read_text())
    for name in ("GPS.LATITUDE", "GPS.LONGITUDE", "GPS.SPEED", "GPS.FIX_QUALITY", "GPS.UTC"):
        t, v = series(pump.store, name)
        assert v == pytest.approx([value for n, value in want if n == name], abs=1e-9), name
        assert before <= t[0] and t[-1] <= after and np.all(np.diff(t) >= 0), name
    t, v = series(pump.store, "GPS.SPEED")
    assert v.size == 87 and v.max() == pytest.approx(70.0, abs=0.01)  # km/h, the receiver said 37.797 kn
    lat = series(pump.store, "GPS.LATITUDE")[1]
    assert 57.70 < lat.min() and lat.max() < 57.73  # Gothenburg, north positive
    assert pump.decoder.malformed_frames == 0
    assert pump.decoder.unknown_frames == 182  # TXT, GSA and GSV: counted, skipped


def test_noise_bad_checksums_and_cut_lines_do_not_stop_the_stream(tmp_path: Path, pump: GpsPump) -> None:
    gga, rmc = line(GGA), line(RMC)
    bad = gga.replace(b"5742.53220", b"5742.53229")  # corrupted in transit: the checksum no longer matches
    played = [
        gga[:20], gga[20:50], gga[50:],  # one sentence in three writes
        b"\x00\xff\xfe\x13\x11garbage\x80\r\n",  # line noise
        bad,
        b"\xb5\x62\x01\x07\x5c\x00" + rmc,  # a binary UBX header glued before a sentence
        rmc[:30],  # cut...
        b"\r\n",  # ... and ended early: a malformed line
        rmc,
    ]
    receiver = PtyReceiver(tmp_path / "gps0", played * 3, interval=0.01, loop=False)
    try:
        pump.start()
        wait_for(lambda: pump.state == "running")
        receiver.start()
        # per round: the cut-up GGA and two RMC read; noise, bad checksum, UBX prefix and cut line malformed
        wait_for(lambda: pump.frames == 9 and pump.decoder.malformed_frames == 12)
        assert pump.state == "running" and pump.error is None
    finally:
        receiver.close()
    lat = series(pump.store, "GPS.LATITUDE")[1]
    assert lat.size == 3 and np.all(lat == pytest.approx(57.70887, abs=1e-9))  # never the corrupted one
    assert series(pump.store, "GPS.SPEED")[1].size == 6
    assert pump.decoder.unknown_frames == 0


def test_an_unplugged_receiver_leaves_a_reported_gap_and_the_port_is_reopened(
    tmp_path: Path, pump: GpsPump, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="oodida.agent.gps")
    lines = [line(RMC)]
    first = PtyReceiver(tmp_path / "gps0", lines, interval=0.01)
    pump.start()
    wait_for(lambda: pump.state == "running")
    first.start()
    wait_for(lambda: pump.frames >= 5)
    first.vanish()
    wait_for(lambda: pump.state == "failed")
    assert "device gone" in (pump.error or "")
    vanished = time.time()
    before = series(pump.store, "GPS.SPEED")[0].size
    time.sleep(0.5)  # unplugged for a while: the pump keeps retrying, and says so
    assert pump.state == "failed" and "device gone since" in (pump.error or "")
    assert "retrying every" in (pump.error or "")  # it tried again, and failed again
    assert series(pump.store, "GPS.SPEED")[0].size == before
    second = PtyReceiver(tmp_path / "gps0", lines, interval=0.01)  # plugged back in, a new node
    try:
        second.start()
        wait_for(lambda: pump.state == "running")
        wait_for(lambda: series(pump.store, "GPS.SPEED")[0].size >= before + 5)
        assert pump.error is None and pump.gaps == 1 and pump.opened == 2  # before unplugging it again
    finally:
        second.close()
    t = series(pump.store, "GPS.SPEED")[0]
    assert t[before] - t[before - 1] >= 0.5 and t[before] > vanished  # the hole in the samples
    assert any("device gone" in r.getMessage() for r in caplog.records)
    assert any("back after a gap of" in r.getMessage() for r in caplog.records)


def test_a_receiver_absent_at_start_is_waited_for(tmp_path: Path, pump: GpsPump) -> None:
    pump.start()
    wait_for(lambda: pump.state == "failed")
    assert "no device since" in (pump.error or "")
    receiver = PtyReceiver(tmp_path / "gps0", [line(GGA)], interval=0.01)
    try:
        receiver.start()
        wait_for(lambda: pump.frames >= 3)
        assert pump.gaps == 1 and pump.state == "running"
    finally:
        receiver.close()


def test_stop_is_prompt_and_ends_the_source_in_the_store(tmp_path: Path) -> None:
    store = SignalStore()
    pump = GpsPump("gps", SerialPort(str(tmp_path / "never")), NmeaDecoder(), store, reopen_min=5, reopen_max=5)
    assert store.sources_running == 1
    pump.start()
    wait_for(lambda: pump.state == "failed")
    started = time.monotonic()
    pump.stop()
    assert time.monotonic() - started < 1.0
    assert pump.state == "ended" and store.sources_running == 0


# --- configuration ------------------------------------------------------------


def write_config(tmp_path: Path, gps: str, extra: str = "") -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f'vehicle = "car-1"\n[server]\nsecret_file = "{secret_file(tmp_path)}"\nplain = true\n'
        f'[[sources]]\nkind = "log"\npath = "{DATA / "rav4-2017-comma2k19.log"}"\n'
        f'dbc = "{DATA / "toyota_rav4_2017.dbc"}"\nchannel = "can0"\nsignals = ["SPEED"]\n'
        f'[[sources]]\nkind = "gps"\n{gps}\n{extra}'
    )
    return path


def test_gps_config_defaults_and_port_as_written(tmp_path: Path) -> None:
    config = load_agent_config(write_config(tmp_path, 'port = "/dev/ttyUSB0"'))
    gps = config.sources[1]
    assert (gps.port, gps.baudrate, gps.prefix, gps.reopen_min, gps.reopen_max) == ("/dev/ttyUSB0", 9600, "GPS", 0.5,
                                                                                    10.0)


@pytest.mark.parametrize(
    ("gps", "message"),
    [
        ('port = "/dev/ttyUSB0"\nbaud = 9600', "unknown field `baud`"),
        ("baudrate = 9600", "missing required field `port`"),
        ('port = "/dev/ttyUSB0"\nprefix = "GPS.X"', "prefix"),
        ('port = "/dev/ttyUSB0"\nreopen_min = 20.0\nreopen_max = 1.0', "reopen_min"),
    ],
)
def test_bad_gps_config_is_refused_by_name(tmp_path: Path, gps: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_agent_config(write_config(tmp_path, gps))


def test_two_receivers_need_two_prefixes(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'port = "/dev/ttyUSB0"', '[[sources]]\nkind = "gps"\nport = "/dev/ttyUSB1"\n')
    with pytest.raises(ConfigError, match="share a prefix"):
        load_agent_config(path)


def test_a_prefix_that_names_dbc_signals_is_refused(tmp_path: Path) -> None:
    config = load_agent_config(write_config(tmp_path, 'port = "/dev/ttyUSB0"\nprefix = "SPEED"'))
    with pytest.raises(ConfigError, match=r"SPEED\.SPEED already recorded"):
        build_agent(config)
