"""Bulk appends to the signal store: the same buffers as appending one sample at a time."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from oodida.agent.store import RingBuffer, SignalStore
from oodida.wire.messages import WindowSpec

SPEED = "SPEED.SPEED"
STEER = "STEER_ANGLE_SENSOR.STEER_ANGLE"


def _state(buf: RingBuffer) -> tuple:
    held = buf.ordered()
    return (buf.cap, buf.head, buf.n, buf.total, held[0].tolist(), held[1].tolist())


@settings(max_examples=300, deadline=None)
@given(
    retention=st.sampled_from([0.5, 3.0, 1e9]),
    max_samples=st.integers(1, 64),
    initial=st.integers(1, 16),
    gaps=st.lists(st.sampled_from([0.0, 0.01, 0.1, 0.5, 1.0, 2.0]), max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=8),
)
def test_extend_leaves_the_buffer_append_would(
    retention: float, max_samples: int, initial: int, gaps: list[float], cuts: list[int]
) -> None:
    # Bursts and pauses, cut into batches anywhere: growth decisions fall inside batches.
    t = np.cumsum(np.array(gaps, dtype=np.float64))
    v = np.arange(t.size, dtype=np.float64) * 0.5
    one = RingBuffer(retention=retention, max_samples=max_samples, initial=initial)
    many = RingBuffer(retention=retention, max_samples=max_samples, initial=initial)
    bounds = sorted({0, t.size, *(min(c, t.size) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        for ti, vi in zip(t[start:end].tolist(), v[start:end].tolist(), strict=True):
            one.append(ti, vi)
        many.extend(t[start:end], v[start:end])
        assert _state(many) == _state(one)


def test_add_batch_equals_adding_frame_by_frame() -> None:
    t = np.arange(0.0, 50.0, 0.01)
    frames = [(ti, [(SPEED, ti * 2)] + ([(STEER, -ti)] if i % 3 == 0 else [])) for i, ti in enumerate(t.tolist())]
    one, many = SignalStore(retention=20.0), SignalStore(retention=20.0)
    for store in (one, many):
        store.declare([SPEED, STEER])
    for ti, values in frames:
        one.add(ti, values)
    for start in range(0, len(frames), 700):
        chunk = frames[start : start + 700]
        batch = {
            SPEED: (np.array([ti for ti, _ in chunk]), np.array([ti * 2 for ti, _ in chunk])),
            STEER: (np.array([ti for ti, vs in chunk if len(vs) > 1]), np.array([-ti for ti,
                                                                                 vs in chunk if len(vs) > 1])),
        }
        many.add_batch(batch)
    assert many.signal_time == one.signal_time == t[-1]
    for name in (SPEED, STEER):
        assert _state(many._buffers[name]) == _state(one._buffers[name])
    spec = WindowSpec(amount=5.0, kind="latest")
    got = many.latest({"s": STEER}, spec).series["s"]
    expected = one.latest({"s": STEER}, spec).series["s"]
    assert np.array_equal(got.t, expected.t) and np.array_equal(got.v, expected.v) and got.t.size > 100


def test_an_empty_batch_changes_nothing() -> None:
    store = SignalStore()
    store.declare([SPEED])
    store.add_batch({})
    store.add_batch({SPEED: (np.empty(0), np.empty(0))})
    assert store.signal_time is None and store._buffers[SPEED].total == 0
