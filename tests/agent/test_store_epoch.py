"""Window edges at epoch-scale signal time (a replayed 2018 drive stamps ~1.5e9 s).

At 1.5e9 s one float64 step is 2.4e-7 s, so an edge nudged by a fixed epsilon does
not move at all; these tests put samples exactly on the edges of every window kind.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from oodida.agent.store import SignalStore
from oodida.wire.messages import WindowSpec

T0 = 1533201287.0  # the RAV4 log's first timestamp
STEP = 0.125  # exact in binary, so T0 + k * STEP is exact at this magnitude too


def _store(count: int = 40) -> tuple[SignalStore, np.ndarray]:
    store = SignalStore(retention=1e9, max_samples=10_000)
    store.declare(["a"])
    t = T0 + STEP * np.arange(count)
    store.add_batch({"a": (t, np.arange(float(count)))})
    return store, t


@pytest.mark.parametrize("kind", ["next", "first"])
async def test_a_seconds_window_from_the_start_keeps_the_first_sample(kind: str) -> None:
    """[T0, T0 + 1 s): 8 samples, the one at T0 among them, the one at T0 + 1 s not."""
    store = SignalStore(retention=1e9, max_samples=10_000)
    store.declare(["a"])
    t = T0 + STEP * np.arange(40)

    store.bind_loop(asyncio.get_running_loop())
    store.sources_running = 1
    waiting = asyncio.create_task(store.window({"a": "a"}, WindowSpec(amount=1.0, kind=kind), timeout=5))
    await asyncio.sleep(0)  # the task is there before the data, as on a vehicle
    store.add_batch({"a": (t, np.arange(40.0))})
    w = await waiting
    assert w.series["a"].v.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert w.series["a"].t[0] == T0


async def test_a_first_window_asked_after_the_data_keeps_the_first_sample() -> None:
    store, _ = _store()

    store.bind_loop(asyncio.get_running_loop())
    store.sources_running = 1
    w = await store.window({"a": "a"}, WindowSpec(amount=2.0, kind="first"), timeout=5)
    assert w.series["a"].v.tolist() == [float(k) for k in range(16)]


async def test_a_next_window_after_a_mark_starts_just_after_it() -> None:
    """(mark, mark + 1 s]: a sample stamped at the mark belongs to what came before."""
    store, t = _store(20)

    store.bind_loop(asyncio.get_running_loop())
    store.sources_running = 1
    waiting = asyncio.create_task(store.window({"a": "a"}, WindowSpec(amount=1.0), timeout=5))
    await asyncio.sleep(0)
    more = T0 + STEP * np.arange(20, 40)
    store.add_batch({"a": (more, np.arange(20.0, 40.0))})
    w = await waiting
    mark = t[-1]
    assert w.t_start == mark and w.t_end == mark + 1.0
    assert w.series["a"].v.tolist() == [float(k) for k in range(20, 28)]


def test_a_latest_seconds_window_holds_its_end_and_not_its_start() -> None:
    store, t = _store()
    w = store.latest({"a": "a"}, WindowSpec(amount=1.0, kind="latest"))
    assert w.t_end == t[-1]
    assert w.series["a"].v.tolist() == [float(k) for k in range(32, 40)]
