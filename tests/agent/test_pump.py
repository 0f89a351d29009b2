"""The pump: batches of a fast source land in the store as frame-by-frame decoding puts them."""

from __future__ import annotations

import threading

import numpy as np

from oodida.agent.pump import Pump
from oodida.agent.store import SignalStore
from oodida.hw.dbc import SignalDecoder
from oodida.hw.frames import FrameBatch
from oodida.hw.source import FrameSource
from oodida.hw.sources import LogReplay
from tests.hw.paths import DBC, LOG


def _run(source: FrameSource, decoder: SignalDecoder) -> tuple[Pump, SignalStore]:
    store = SignalStore(retention=1e9, max_samples=1_000_000)
    store.declare(list(decoder.signal_names))
    pump = Pump("test", source, decoder, store)
    pump.start()
    pump._thread.join(timeout=60)
    assert pump.state == "ended", pump.error
    return pump, store


def test_a_replay_at_speed_zero_fills_the_store_as_decoding_each_frame_does() -> None:
    pump, store = _run(LogReplay(LOG, speed=0, channel="can0"), SignalDecoder(DBC))
    reference = SignalDecoder(DBC)
    expected = SignalStore(retention=1e9, max_samples=1_000_000)
    expected.declare(list(reference.signal_names))
    for message in LogReplay(LOG, speed=0, channel="can0").frames(threading.Event()):
        values = reference.decode(message.arbitration_id, bytes(message.data))
        if values:
            expected.add(message.timestamp, values)
    assert pump.frames == reference.frames == 53_800
    counters = ("frames", "unknown_frames", "malformed_frames")
    assert [getattr(pump.decoder, c) for c in counters] == [getattr(reference, c) for c in counters]
    assert store.signal_time == expected.signal_time
    held = 0
    for name in reference.signal_names:
        got_t, got_v = store._buffers[name].ordered()
        want_t, want_v = expected._buffers[name].ordered()
        assert np.array_equal(got_t, want_t) and np.array_equal(got_v, want_v, equal_nan=True), name
        held += got_t.size
    assert held > 200_000
    assert store.sources_running == 0


class _Trickle(FrameSource):
    """One frame at a time, as a quiet bus gives them: the default `batches`."""

    def __init__(self, frames: list[tuple[float, int, bytes]]) -> None:
        self._frames = frames

    def frames(self, stop: threading.Event):  # type: ignore[override]
        import can

        for t, i, d in self._frames:
            yield can.Message(timestamp=t, arbitration_id=i, data=d, is_extended_id=False)

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "trickle"

    @property
    def ended(self) -> bool:
        return True


def test_single_frames_take_the_per_frame_path_with_the_same_result() -> None:
    frames = [(float(i), 0xB4, bytes.fromhex("000000001D0B7A5E")) for i in range(5)] + [(9.0, 0xB4, b"\x00")]
    batch = FrameBatch.from_frames(frames)
    pump, store = _run(_Trickle(frames), SignalDecoder(DBC, ["SPEED"]))
    t, v = store._buffers["SPEED"].ordered()
    assert t.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0] and v.tolist() == [0x0B7A * 0.01] * 5
    assert pump.decoder.malformed_frames == 1 and pump.frames == len(batch)


def test_a_failing_source_is_reported_not_raised() -> None:
    class Broken(_Trickle):
        def frames(self, stop: threading.Event):  # type: ignore[override]
            raise OSError("bus off")
            yield  # pragma: no cover

    store = SignalStore()
    pump = Pump("broken", Broken([]), SignalDecoder(DBC, ["SPEED"]), store)
    pump.start()
    pump._thread.join(timeout=5)
    assert pump.state == "failed" and pump.error == "bus off" and store.sources_running == 0


def test_a_looping_replay_at_speed_zero_keeps_signal_time_increasing_until_stopped() -> None:
    store = SignalStore(retention=5.0, max_samples=10_000)
    decoder = SignalDecoder(DBC, ["SPEED"])
    store.declare(["SPEED"])
    pump = Pump("loop", LogReplay(LOG, speed=0, loop=True, channel="can0"), decoder, store)
    pump.start()
    while pump.frames < 200_000:
        pump._thread.join(timeout=0.01)
    pump.stop()
    assert not pump._thread.is_alive() and pump.state == "ended"
    t, _ = store._buffers["SPEED"].ordered()
    assert pump.frames >= 200_000  # several passes of the 53,800-frame log
    assert np.all(np.diff(t) > 0) and t[-1] - t[0] >= 5.0  # at least `retention` kept, in order
