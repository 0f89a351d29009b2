"""The agent's recent history of every recorded signal, and the windows cut from it.

One ring buffer per signal (timestamps and values as float64 numpy arrays). Buffers
start small and grow while their oldest sample is younger than the retention period,
up to a hard cap of samples; past that the oldest samples are overwritten. So a
signal at 100 Hz and one at 1 Hz both keep `retention` seconds, in bounded memory.

Reader threads append; the asyncio loop cuts windows. One lock guards both, held only
for an append or a copy.

Each buffer's timestamps ascend, which windows rely on. A sample stamped before the
newest one its signal holds (a live source whose clock stepped back; a replayed log
is sorted before it is replayed, `hw.replay`) is dropped and counted (`late`), not
inserted: inserting would rewrite windows already cut, and a clock that went back
means those stamps are not to be trusted anyway.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from oodida.analytics.series import Series
from oodida.core.errors import OodidaError
from oodida.wire.messages import WindowSpec

log = logging.getLogger(__name__)

WAKE_INTERVAL = 0.005  # seconds between two checks of pending windows


class WindowError(OodidaError):
    """A window cannot be cut: unknown signal, data overwritten, source ended."""


class RingBuffer:
    __slots__ = ("t", "v", "cap", "max_samples", "retention", "head", "n", "total", "late", "name")

    def __init__(self, *, retention: float, max_samples: int, initial: int = 1024, name: str = "") -> None:
        self.cap = min(initial, max_samples)
        self.max_samples = max_samples
        self.retention = retention
        self.t = np.empty(self.cap, dtype=np.float64)
        self.v = np.empty(self.cap, dtype=np.float64)
        self.head = 0  # next slot to write
        self.n = 0  # samples held
        self.total = 0  # samples ever appended: the sequence number of the next one
        self.late = 0  # samples dropped for being older than the newest held
        self.name = name  # for the one log line about late samples

    def _dropped(self, count: int) -> None:
        if not self.late:
            log.warning(
                "%s: samples stamped before the newest one held were dropped (did the clock step back?); "
                "further ones are only counted",
                self.name or "a signal",
            )
        self.late += count

    @property
    def newest(self) -> float:
        """The newest timestamp held (the last written: timestamps ascend)."""
        return float(self.t[self.head - 1]) if self.n else -np.inf

    def append_checked(self, t: float, v: float) -> None:
        """`append`, unless `t` is older than the newest sample held: then dropped and counted."""
        if self.n and t < self.t[self.head - 1]:
            self._dropped(1)
            return
        self.append(t, v)

    def append(self, t: float, v: float) -> None:
        """Append a sample no older than the newest held (`append_checked` otherwise)."""
        if self.n == self.cap and self.cap < self.max_samples:
            oldest = self.t[self.head]  # when full, head is also the oldest slot
            if t - oldest < self.retention:
                self._grow()
        self.t[self.head] = t
        self.v[self.head] = v
        self.head += 1
        if self.head == self.cap:
            self.head = 0
        if self.n < self.cap:
            self.n += 1
        self.total += 1

    def extend(self, t: np.ndarray, v: np.ndarray) -> None:
        """Append many samples: the same buffer, slot for slot, as `append` one by one.

        Filling free slots and overwriting are slice copies; only where the buffer is
        full and may still grow does the rule "grow while the oldest sample is younger
        than `retention`" need the oldest sample at each step, and those are the
        held samples in order followed by the new ones, so one vector comparison finds
        where it would grow.
        """
        count = int(t.shape[0])
        if not count:
            return
        # `t` ascends (the decoder sorts a batch that does not, `decode_batch`), so
        # only its first sample can be older than what is held: one test per call.
        if self.n and t[0] < self.t[self.head - 1]:
            # Keep what does not go back in time: each sample at or after every one before it.
            before = np.maximum.accumulate(np.concatenate(([self.newest], t[:-1])))
            keep = t >= before
            self._dropped(int(count - keep.sum()))
            t, v = t[keep], v[keep]
            count = int(t.shape[0])
            if not count:
                return
        i = 0
        while i < count:
            if self.n < self.cap:  # free slots are [head, cap): held samples start at slot 0
                k = min(self.cap - self.n, count - i)
                self.t[self.head : self.head + k] = t[i : i + k]
                self.v[self.head : self.head + k] = v[i : i + k]
                self.head = (self.head + k) % self.cap
                self.n += k
                self.total += k
                i += k
                continue
            k = count - i
            if self.cap < self.max_samples:
                held = min(k, self.cap)
                oldest = self.t[(self.head + np.arange(held)) % self.cap]
                if k > held:
                    oldest = np.concatenate((oldest, t[i : i + k - held]))
                grows = t[i : i + k] - oldest < self.retention
                if grows.any():
                    k = int(grows.argmax())
            self._overwrite(t[i : i + k], v[i : i + k])
            i += k
            if i < count:
                self._grow()

    def _overwrite(self, t: np.ndarray, v: np.ndarray) -> None:
        """Write over the oldest samples of a full buffer; only the last `cap` can stay."""
        count = int(t.shape[0])
        first = max(0, count - self.cap)
        slots = (self.head + np.arange(first, count)) % self.cap
        self.t[slots] = t[first:]
        self.v[slots] = v[first:]
        self.head = (self.head + count) % self.cap
        self.total += count

    def _grow(self) -> None:
        t, v = self.ordered()
        cap = min(self.cap * 2, self.max_samples)
        self.t = np.empty(cap, dtype=np.float64)
        self.v = np.empty(cap, dtype=np.float64)
        self.t[: self.n] = t
        self.v[: self.n] = v
        self.head = self.n
        self.cap = cap

    def ordered(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the held samples, oldest first."""
        if self.n < self.cap:
            start = self.head - self.n
            return self.t[start : self.head].copy(), self.v[start : self.head].copy()
        return np.concatenate((self.t[self.head :], self.t[: self.head])), np.concatenate(
            (self.v[self.head :], self.v[: self.head])
        )

    @property
    def first_seq(self) -> int:
        return self.total - self.n

    @property
    def oldest_t(self) -> float | None:
        return float(self.t[(self.head - self.n) % self.cap]) if self.n else None

    @property
    def newest_t(self) -> float | None:
        return float(self.t[(self.head - 1) % self.cap]) if self.n else None

    def _take(self, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """`count` samples from physical slot `start` on, wrapping: copies of just
        those, so cutting a 5 s window from a 300 s buffer costs 5 s of copying."""
        end = start + count
        if end <= self.cap:
            return self.t[start:end].copy(), self.v[start:end].copy()
        rest = end - self.cap
        return (
            np.concatenate((self.t[start:], self.t[:rest])),
            np.concatenate((self.v[start:], self.v[:rest])),
        )

    def between(self, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
        """Samples with lo < t <= hi (timestamps ascend within the buffer)."""
        oldest = (self.head - self.n) % self.cap
        if self.n < self.cap or oldest == 0:
            t = self.t[oldest : oldest + self.n]
            i = int(np.searchsorted(t, lo, side="right"))
            j = int(np.searchsorted(t, hi, side="right"))
            return self._take(oldest + i, max(j - i, 0))
        first, second = self.t[oldest:], self.t[: self.head]  # older part, newer part
        i = _rank(first, second, lo)
        j = _rank(first, second, hi)
        return self._take((oldest + i) % self.cap, max(j - i, 0))

    def last(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        count = min(count, self.n)
        return self._take((self.head - count) % self.cap, count)

    def from_seq(self, seq: int, count: int) -> tuple[np.ndarray, np.ndarray] | None:
        """`count` samples from sequence number `seq` on; None if they were overwritten."""
        if seq < self.first_seq:
            return None
        offset = seq - self.first_seq
        count = min(count, self.n - offset)
        return self._take((self.head - self.n + offset) % self.cap, count)


def _rank(first: np.ndarray, second: np.ndarray, x: float) -> int:
    """How many samples of the wrapped buffer (first, then second) have t <= x."""
    i = int(np.searchsorted(first, x, side="right"))
    if i < first.size:
        return i
    return first.size + int(np.searchsorted(second, x, side="right"))


@dataclass
class _Mark:
    """Where a `next` window starts: signal time and per-signal sequence numbers."""

    time: float | None
    seqs: dict[str, int]
    # Set when the window starts at the first sample: [time, time + amount) instead of
    # (time, time + amount], so that sample is in and the one `amount` later is not.
    from_first: bool = False


@dataclass
class Window:
    series: dict[str, Series]  # keyed by the names the task used
    t_start: float | None
    t_end: float | None

    @property
    def samples(self) -> dict[str, int]:
        return {name: int(s.t.size) for name, s in self.series.items()}


class SignalStore:
    def __init__(self, *, retention: float = 300.0, max_samples: int = 200_000) -> None:
        self.retention = retention
        self.max_samples = max_samples
        self._buffers: dict[str, RingBuffer] = {}
        self._lock = threading.Lock()
        self.signal_time: float | None = None  # newest timestamp seen on any signal
        self.sources_running = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[Callable[[], bool]] = []
        self._last_wake = 0.0
        self._wake_pending = False

    # --- writing (reader threads) ----------------------------------------------------

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that waits for windows; reader threads wake it when data comes."""
        self._loop = loop

    def declare(self, names: list[str]) -> None:
        """Create buffers up front, so a signal that has not appeared yet is known."""
        with self._lock:
            for name in names:
                if name not in self._buffers:
                    self._buffers[name] = RingBuffer(retention=self.retention, max_samples=self.max_samples, name=name)

    def add(self, t: float, values: list[tuple[str, float]]) -> None:
        """Append one frame's decoded values, all stamped `t`."""
        with self._lock:
            buffers = self._buffers
            if self.signal_time is None or t >= self.signal_time:
                # No buffer holds anything newer: no sample of this frame can be late.
                for name, value in values:
                    buffers[name].append(t, value)
                self.signal_time = t
            else:
                for name, value in values:
                    buffers[name].append_checked(t, value)
        if self._waiters:
            self._wake_soon()

    def add_batch(self, decoded: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Append many frames' decoded values at once: {name: (timestamps, values)},
        one lock and one slice copy per signal instead of per frame and value."""
        if not decoded:
            return
        with self._lock:
            buffers = self._buffers
            newest = self.signal_time
            for name, (t, v) in decoded.items():
                buffers[name].extend(t, v)
                if t.size:
                    latest = float(t[-1])  # series ascend (`decode_batch` sorts): the last is the newest
                    if newest is None or latest > newest:
                        newest = latest
            self.signal_time = newest
        if self._waiters:
            self._wake_soon()

    def source_ended(self) -> None:
        with self._lock:
            self.sources_running -= 1
        self._wake_soon(force=True)

    def _wake_soon(self, force: bool = False) -> None:
        """Have the loop re-check pending windows: at most once per 5 ms, not once per
        frame, and never dropping the last wake-up (a check is always scheduled after
        the newest data, however the throttle falls)."""
        if self._loop is None or self._wake_pending:
            return
        self._wake_pending = True
        delay = 0.0 if force else max(0.0, self._last_wake + WAKE_INTERVAL - time.monotonic())
        try:
            self._loop.call_soon_threadsafe(self._schedule_check, delay)
        except RuntimeError:  # loop closed at shutdown
            self._wake_pending = False

    def _schedule_check(self, delay: float) -> None:
        assert self._loop is not None
        if delay > 0:
            self._loop.call_later(delay, self._check_waiters)
        else:
            self._check_waiters()

    def _check_waiters(self) -> None:
        self._wake_pending = False  # first: data added from now on schedules another check
        self._last_wake = time.monotonic()
        self._waiters = [w for w in self._waiters if not w()]

    # --- reading (asyncio loop) ------------------------------------------------------

    @property
    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._buffers)

    def rates(self) -> dict[str, tuple[int, float | None]]:
        """Per signal: samples held, and the rate they came at (samples per second of
        signal time, over the buffer; None under two samples or no time between)."""
        out: dict[str, tuple[int, float | None]] = {}
        with self._lock:
            for name, buf in self._buffers.items():
                oldest, newest = buf.oldest_t, buf.newest_t
                span = None if oldest is None or newest is None else newest - oldest
                rate = (buf.n - 1) / span if buf.n >= 2 and span else None
                out[name] = (buf.n, rate)
        return out

    def newest(self, name: str) -> tuple[float, float] | None:
        """The newest sample of a signal, (time, value); None if it has none."""
        with self._lock:
            buf = self._buffers.get(name)
            if buf is None or buf.n == 0:
                return None
            t, v = buf.last(1)
            return float(t[0]), float(v[0])

    @property
    def late_samples(self) -> dict[str, int]:
        """Samples dropped per signal for being stamped before the newest one held."""
        with self._lock:
            return {name: b.late for name, b in self._buffers.items() if b.late}

    def __contains__(self, name: str) -> bool:
        return name in self._buffers

    def latest(self, names: dict[str, str], spec: WindowSpec) -> Window:
        """The last `amount` seconds (before the newest signal time) or samples.
        `names` maps the task's names to buffer names."""
        with self._lock:
            end = self.signal_time
            series: dict[str, Series] = {}
            for asked, name in names.items():
                buf = self._buffers[name]
                if spec.unit == "samples":
                    series[asked] = Series(*buf.last(int(spec.amount)))
                elif end is None:
                    series[asked] = Series(np.empty(0), np.empty(0))
                else:
                    series[asked] = Series(*buf.between(end - spec.amount, end))
        if spec.unit == "s":
            start = None if end is None else end - spec.amount
            return Window(series, start, end)
        return Window(series, *_span(series))

    def mark(self, names: dict[str, str]) -> _Mark:
        with self._lock:
            return _Mark(self.signal_time, {name: self._buffers[name].total for name in names.values()})

    def _next_ready(self, names: dict[str, str], spec: WindowSpec, mark: _Mark) -> Window | None:
        with self._lock:
            if spec.unit == "s":
                if self.signal_time is None:
                    return None
                if mark.time is None:  # nothing had arrived when the task did: start at the first sample
                    firsts = [b.t[(b.head - b.n) % b.cap] for b in self._buffers.values() if b.n]
                    if not firsts:
                        return None
                    mark.time, mark.from_first = float(min(firsts)), True
                end = mark.time + spec.amount
                if self.signal_time < end:
                    return None
                lo, hi = mark.time, end
                if mark.from_first:
                    # between() takes (lo, hi]; one float step down on both edges makes it
                    # [first, end) at any magnitude (a fixed epsilon is lost at
                    # epoch-scale times, where one step is 2.4e-7 s).
                    lo, hi = float(np.nextafter(lo, -np.inf)), float(np.nextafter(hi, -np.inf))
                series = {}
                for asked, name in names.items():
                    buf = self._buffers[name]
                    oldest = buf.oldest_t
                    if buf.first_seq > 0 and oldest is not None and oldest > mark.time:
                        raise WindowError(f"{asked}: samples were overwritten before the window could be cut")
                    series[asked] = Series(*buf.between(lo, hi))
                return Window(series, mark.time, end)
            n = int(spec.amount)
            for name in names.values():
                if self._buffers[name].total < mark.seqs[name] + n:
                    return None
            series = {}
            for asked, name in names.items():
                taken = self._buffers[name].from_seq(mark.seqs[name], n)
                if taken is None:
                    raise WindowError(f"{asked}: samples were overwritten before the window could be cut")
                series[asked] = Series(*taken)
            return Window(series, *_span(series))

    def _progress(self, names: dict[str, str], spec: WindowSpec, mark: _Mark) -> str:
        with self._lock:
            if spec.unit == "s":
                got = 0.0 if self.signal_time is None or mark.time is None else self.signal_time - mark.time
                return f"{max(got, 0.0):.3f} of {spec.amount:g} s of signal time arrived"
            parts = [
                f"{asked} {self._buffers[name].total - mark.seqs[name]} of {int(spec.amount)}"
                for asked, name in names.items()
            ]
            return "samples arrived: " + ", ".join(parts)

    def _check_first_kept(self, names: dict[str, str]) -> None:
        """A `first` window needs the recording's first samples, still held."""
        with self._lock:
            for asked, name in names.items():
                if self._buffers[name].first_seq > 0:
                    raise WindowError(f"{asked}: the first samples recorded were overwritten; no `first` window")

    async def window(self, names: dict[str, str], spec: WindowSpec, *, timeout: float) -> Window:
        """Cut a window: at once for `latest`, when the data is in for `next` and `first`; a
        `WindowError` that says how far it got if it is not in within `timeout` s."""
        if spec.kind == "latest":
            return self.latest(names, spec)
        # `first`: a `next` window marked at the very start of the recording
        mark = self.mark(names) if spec.kind == "next" else _Mark(None, {name: 0 for name in names.values()})
        loop = asyncio.get_running_loop()
        self.bind_loop(loop)
        future: asyncio.Future[Window] = loop.create_future()

        def check() -> bool:
            if future.done():
                return True
            try:
                if spec.kind == "first":
                    self._check_first_kept(names)
                ready = self._next_ready(names, spec, mark)
            except WindowError as exc:
                future.set_exception(exc)
                return True
            except Exception as exc:  # never a traceback in the loop's callback and a window left waiting
                future.set_exception(WindowError(f"the window cannot be cut: {exc}"))
                return True
            if ready is not None:
                future.set_result(ready)
                return True
            if self.sources_running <= 0:
                future.set_exception(
                    WindowError(
                        "every signal source has ended; the window cannot fill"
                        f" ({self._progress(names, spec, mark)})"
                    )
                )
                return True
            return False

        if check():
            return await future
        self._waiters.append(check)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise WindowError(
                f"window not complete within {timeout:g} s ({self._progress(names, spec, mark)})"
            ) from None


def _span(series: dict[str, Series]) -> tuple[float | None, float | None]:
    starts = [float(s.t[0]) for s in series.values() if s.t.size]
    ends = [float(s.t[-1]) for s in series.values() if s.t.size]
    return (min(starts) if starts else None, max(ends) if ends else None)


__all__ = ["RingBuffer", "SignalStore", "Window", "WindowError"]
