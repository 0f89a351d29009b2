"""Ring buffers and windows: exact slices of signal time, whatever the arrival pace."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from oodida.agent.store import RingBuffer, SignalStore, WindowError
from oodida.wire.messages import WindowSpec

SPEED = "SPEED.SPEED"


def test_ring_buffer_grows_within_retention_then_overwrites_oldest():
    buf = RingBuffer(retention=10.0, max_samples=64, initial=4)
    for i in range(20):  # 20 samples within 10 s: grows 4 -> 8 -> 16 -> 32
        buf.append(i * 0.1, float(i))
    t, v = buf.ordered()
    assert buf.cap == 32 and v.tolist() == [float(i) for i in range(20)]
    buf = RingBuffer(retention=1.0, max_samples=64, initial=4)
    for i in range(10):  # 1 sample per second: retention 1 s keeps the buffer at 4
        buf.append(float(i), float(i))
    t, v = buf.ordered()
    assert buf.cap == 4 and v.tolist() == [6.0, 7.0, 8.0, 9.0] and buf.first_seq == 6


def test_ring_buffer_hard_cap_holds():
    buf = RingBuffer(retention=1e9, max_samples=8, initial=2)
    for i in range(100):
        buf.append(float(i), float(i))
    assert buf.cap == 8 and buf.ordered()[1].tolist() == [float(i) for i in range(92, 100)]


def feed(store: SignalStore, t: np.ndarray, v: np.ndarray, name: str = SPEED) -> None:
    for ti, vi in zip(t.tolist(), v.tolist(), strict=True):
        store.add(ti, [(name, vi)])


def test_latest_seconds_window_is_the_exact_slice(decoded_log):
    t, v = decoded_log["series"][SPEED]
    store = SignalStore()
    store.declare([SPEED])
    feed(store, t, v)
    w = store.latest({"SPEED": SPEED}, WindowSpec(amount=10.0, kind="latest"))
    mask = (t > t[-1] - 10.0) & (t <= t[-1])
    assert np.array_equal(w.series["SPEED"].v, v[mask])
    assert np.array_equal(w.series["SPEED"].t, t[mask])
    w = store.latest({"SPEED": SPEED}, WindowSpec(amount=100, unit="samples", kind="latest"))
    assert np.array_equal(w.series["SPEED"].v, v[-100:])


async def test_next_window_by_seconds_fed_from_another_thread(decoded_log):
    """The replay thread races ahead; the window is still exactly (T0, T0 + 5 s]."""
    t, v = decoded_log["series"][SPEED]
    store = SignalStore()
    store.declare([SPEED])
    half = len(t) // 2
    feed(store, t[:half], v[:half])
    t0 = t[half - 1]

    store.bind_loop(asyncio.get_running_loop())
    store.sources_running = 1
    waiting = asyncio.create_task(store.window({"SPEED": SPEED}, WindowSpec(amount=5.0), timeout=30))
    await asyncio.sleep(0)  # the window is registered before the data arrives
    feeder = threading.Thread(target=feed, args=(store, t[half:], v[half:]))
    feeder.start()
    w = await waiting
    feeder.join()
    mask = (t > t0) & (t <= t0 + 5.0)
    assert np.array_equal(w.series["SPEED"].v, v[mask])
    assert w.t_start == t0 and w.t_end == t0 + 5.0


async def test_next_window_by_samples():
    store = SignalStore()
    store.declare(["a"])
    feed(store, np.arange(10.0), np.arange(10.0), "a")

    store.bind_loop(asyncio.get_running_loop())
    store.sources_running = 1
    waiting = asyncio.create_task(store.window({"a": "a"}, WindowSpec(amount=3, unit="samples"), timeout=5))
    await asyncio.sleep(0)
    feed(store, np.arange(10.0, 20.0), np.arange(10.0, 20.0), "a")
    w = await waiting
    assert w.series["a"].v.tolist() == [10.0, 11.0, 12.0]


async def test_next_window_that_cannot_fill_says_how_far_it_got():
    store = SignalStore()
    store.declare(["a"])
    feed(store, np.arange(3.0), np.arange(3.0), "a")

    with pytest.raises(WindowError, match=r"within 0.2 s \(0.000 of 50 s of signal time arrived\)"):
        store.bind_loop(asyncio.get_running_loop())
        store.sources_running = 1
        await store.window({"a": "a"}, WindowSpec(amount=50.0), timeout=0.2)


@pytest.mark.timeout(5)
async def test_next_window_fails_at_once_when_every_source_has_ended():
    store = SignalStore()
    store.declare(["a"])
    feed(store, np.arange(3.0), np.arange(3.0), "a")

    with pytest.raises(WindowError, match="every signal source has ended"):
        store.bind_loop(asyncio.get_running_loop())
        store.sources_running = 0
        await store.window({"a": "a"}, WindowSpec(amount=50, unit="samples"), timeout=30)


async def test_next_window_whose_samples_were_overwritten_is_an_error():
    store = SignalStore(retention=0.001, max_samples=16)
    store.declare(["a"])

    with pytest.raises(WindowError, match="overwritten"):
        store.bind_loop(asyncio.get_running_loop())
        store.sources_running = 1
        waiting = asyncio.create_task(store.window({"a": "a"}, WindowSpec(amount=20, unit="samples"), timeout=5))
        await asyncio.sleep(0)
        feed(store, np.arange(40.0), np.arange(40.0), "a")
        await waiting


@pytest.mark.parametrize("fill", [5, 16, 17, 23, 40, 47])
def test_cutting_a_wrapped_ring_equals_cutting_the_ordered_copy(fill):
    """Windows are cut from the ring in place; they must equal slices of the
    oldest-first copy, whatever the wrap position."""
    buf = RingBuffer(retention=0.0, max_samples=16, initial=16)
    for i in range(fill):
        buf.append(float(i), float(i) * 10)
    t, v = buf.ordered()
    for lo, hi in [(-1.0, 100.0), (t[0], t[-1]), (t[0] - 0.5, t[0] + 3.5), (t[-1] - 4.0, t[-1]), (1e9, 2e9)]:
        mask = (t > lo) & (t <= hi)
        bt, bv = buf.between(lo, hi)
        assert bt.tolist() == t[mask].tolist() and bv.tolist() == v[mask].tolist()
    for n in (0, 1, 5, 16, 99):
        assert buf.last(n)[1].tolist() == v[len(v) - min(n, len(v)) :].tolist()
    for seq in range(buf.first_seq, buf.total):
        got = buf.from_seq(seq, 3)
        assert got is not None and got[1].tolist() == v[seq - buf.first_seq : seq - buf.first_seq + 3].tolist()
    if buf.first_seq:
        assert buf.from_seq(buf.first_seq - 1, 3) is None


async def test_the_last_frames_before_a_source_goes_quiet_still_complete_a_window():
    """Wake-ups are throttled; the last one must never be dropped, or a window whose
    data arrived just after a check, within one throttle interval, would wait for
    more data forever (until its deadline)."""

    def burst(store: SignalStore, checked: threading.Event) -> None:
        for i in range(3):  # too little for the window; triggers a check
            store.add(i * 0.1, [("a", float(i))])
        checked.wait(1)
        for i in range(3, 50):  # the rest, right after that check, then silence
            store.add(i * 0.1, [("a", float(i))])

    async def one_window():
        store = SignalStore()
        store.declare(["a"])
        store.bind_loop(asyncio.get_running_loop())
        store.sources_running = 1
        checked = threading.Event()
        original = store._check_waiters

        def spy() -> None:
            original()
            checked.set()

        store._check_waiters = spy  # type: ignore[method-assign]
        waiting = asyncio.create_task(store.window({"a": "a"}, WindowSpec(amount=1.0), timeout=2))
        await asyncio.sleep(0)
        feeder = threading.Thread(target=burst, args=(store, checked))
        feeder.start()
        try:
            return await waiting
        finally:
            feeder.join()

    for _ in range(5):
        w = await asyncio.wait_for(one_window(), 10)
        assert w.series["a"].v.size == 10


@pytest.mark.parametrize("unit", ["samples", "s"])
async def test_first_window_is_the_start_of_the_recording_whenever_the_task_arrives(unit):
    """`first` takes the recording's first samples once they are in: a task before the
    data waits for them, one after the data gets the same window."""
    amount = 5 if unit == "samples" else 4.5  # samples 0..4 either way (t = 0, 1, ..., 4)
    spec = WindowSpec(amount=amount, unit=unit, kind="first")
    store = SignalStore()
    store.declare(["a"])

    store.bind_loop(asyncio.get_running_loop())
    store.sources_running = 1
    early = asyncio.create_task(store.window({"a": "a"}, spec, timeout=5))
    await asyncio.sleep(0)
    feed(store, np.arange(3.0), np.arange(3.0) * 10, "a")
    await asyncio.sleep(0.05)
    assert not early.done()  # 3 samples in: waits for the rest
    feed(store, np.arange(3.0, 40.0), np.arange(3.0, 40.0) * 10, "a")
    late = await store.window({"a": "a"}, spec, timeout=5)
    early, late = await early, late
    for w in (early, late):
        assert w.series["a"].v.tolist() == [0.0, 10.0, 20.0, 30.0, 40.0]


async def test_first_window_whose_first_samples_were_overwritten_is_an_error():
    store = SignalStore(retention=0.001, max_samples=16)
    store.declare(["a"])
    feed(store, np.arange(40.0), np.arange(40.0), "a")

    with pytest.raises(WindowError, match="first samples recorded were overwritten"):
        store.bind_loop(asyncio.get_running_loop())
        store.sources_running = 1
        await store.window({"a": "a"}, WindowSpec(amount=4, unit="samples", kind="first"), timeout=5)
