"""The RAV4 drive's first seconds in every format python-can writes, each replayed
and windowed with the candump log's answer.

The files are written here, by python-can's own writers, from a slice of the
candump log (its can0 frames: .csv and .db keep no channel). ASAM MDF needs the
optional asammdf (`pip install 'oodida[mdf]'`; the `test` extra has it).
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import threading
from pathlib import Path

import can
import numpy as np
import pytest

from oodida.agent.pump import Pump
from oodida.agent.store import SignalStore, Window
from oodida.hw.dbc import SignalDecoder
from oodida.hw.sources import LogReplay
from oodida.wire.messages import WindowSpec
from tests.helpers import eventually_blocking
from tests.hw.paths import DBC, LOG

SECONDS = 6.0
SIGNALS = ["SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE", "WHEEL_SPEEDS.WHEEL_SPEED_FL", "GAS_PEDAL.GAS_PEDAL"]
HAVE_ASAMMDF = importlib.util.find_spec("asammdf") is not None
# Set by .ci/run, whose `test` extra installs asammdf: there a missing one fails, not skips.
REQUIRE_MDF = os.environ.get("OODIDA_REQUIRE_MDF") == "1"
# Where a format stores times more coarsely than candump's microseconds.
TIME_TOLERANCE = {".asc": 1e-3, ".trc": 1e-6, ".blf": 1e-5}

FORMATS = [".log", ".asc", ".blf", ".csv", ".trc", ".db",
           pytest.param(".mf4", marks=pytest.mark.skipif(
               not HAVE_ASAMMDF and not REQUIRE_MDF, reason="ASAM MDF needs asammdf: pip install 'oodida[mdf]'"))]


@pytest.fixture(scope="module")
def drive_slice() -> list[can.Message]:
    with can.LogReader(LOG) as reader:
        messages = list(reader)
    first = messages[0].timestamp
    return [m for m in itertools.takewhile(lambda m: m.timestamp < first + SECONDS, messages) if m.channel == "can0"]


@pytest.fixture(scope="module")
def logs(drive_slice: list[can.Message], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("formats")
    written = {}
    for suffix in (".log", ".asc", ".blf", ".csv", ".trc", ".db", ".mf4"):
        if suffix == ".mf4" and not HAVE_ASAMMDF and not REQUIRE_MDF:
            continue  # (required: python-can's MF4Writer raises, naming asammdf)
        path = directory / f"rav4{suffix}"
        with can.Logger(path) as writer:
            for message in drive_slice:
                writer.on_message_received(message)
            if suffix == ".db":
                # python-can's SqliteWriter drops what it has not written when stopped
                # (it writes 501 rows at a time from a thread); wait until it has all.
                eventually_blocking(lambda: writer.num_frames >= len(drive_slice), 30,
                                    what="python-can's SqliteWriter to write every frame")
        written[suffix] = path
    return written


async def _window(path: Path, spec: WindowSpec) -> tuple[Window, SignalDecoder]:
    decoder = SignalDecoder(DBC, SIGNALS)
    store = SignalStore(retention=1e9, max_samples=1_000_000)
    store.declare(list(decoder.signal_names))
    store.bind_loop(asyncio.get_running_loop())
    pump = Pump("format", LogReplay(path, speed=0), decoder, store)
    waiting = asyncio.create_task(store.window({s: s for s in decoder.signal_names}, spec, timeout=30))
    await asyncio.sleep(0)
    pump.start()
    try:
        window = await waiting
        await asyncio.to_thread(pump._thread.join, 30)  # the whole log, for the counters
        return window, decoder
    finally:
        pump.stop()


def test_the_slice_is_a_real_piece_of_the_drive(drive_slice: list[can.Message]) -> None:
    assert len(drive_slice) > 5000


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_replays_every_frame(suffix: str, logs: dict[str, Path], drive_slice: list[can.Message]) -> None:
    replay = LogReplay(logs[suffix], speed=0)
    got = list(replay.frames(threading.Event()))
    assert [(m.arbitration_id, bytes(m.data)) for m in got] == [(m.arbitration_id, bytes(m.data)) for m in drive_slice]
    times = np.array([m.timestamp for m in got])
    want = np.array([m.timestamp for m in drive_slice])
    assert np.abs(times - want).max() <= TIME_TOLERANCE.get(suffix, 1e-9)  # absolute time, .asc too
    assert replay.unreadable == 0 and replay.time_base == "absolute"


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("spec", [WindowSpec(amount=2.0, kind="first"), WindowSpec(amount=150, unit="samples",
                                                                                   kind="first")],
                         ids=["2s", "150samples"])
async def test_every_format_gives_the_candump_logs_window(suffix: str, spec: WindowSpec, logs: dict[str, Path]) -> None:
    want, want_decoder = await _window(logs[".log"], spec)
    got, decoder = await _window(logs[suffix], spec)
    assert got.samples == want.samples
    assert min(want.samples.values()) > 0
    for name, series in want.series.items():
        assert got.series[name].v.tolist() == series.v.tolist(), name
        assert np.abs(got.series[name].t - series.t).max(initial=0) <= TIME_TOLERANCE.get(suffix, 1e-9)
    assert (decoder.frames, decoder.unknown_frames, decoder.malformed_frames) == (
        want_decoder.frames, want_decoder.unknown_frames, want_decoder.malformed_frames)
