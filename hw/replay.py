"""Replaying a recorded CAN log as if it were a live bus.

A log stands in for a vehicle in tests, demos and fleet simulations, so it must behave
like one: frames arrive paced in real time (or faster), signal time only moves
forward even when the log loops, and the reader stops promptly when asked.

The log's timeline is taken over all its channels, even when one channel is kept:
two replays of one log (`channel="can0"` and `channel="can1"`) with equal offsets
then stay in step, as the two buses of one car do.

A damaged log replays what can be read of it (`hw.logread`): unreadable lines are
skipped, counted and named (file:line), and only a file with nothing readable is
refused. A log out of timestamp order (merged from two interfaces, or rewritten) is
replayed in timestamp order, stably: each frame did happen at its stamp, so sorting
loses nothing, where dropping the late ones would lose data and replaying file order
would send signal time backwards. Channels are matched as text, so `channel = "0"`
finds the integer channels of .asc, .blf and .trc logs.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import logging
import operator
import os
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import can

from oodida.hw.errors import SourceError
from oodida.hw.frames import ERROR_FLAG, REMOTE_FLAG, FrameBatch
from oodida.hw.logread import ABSOLUTE, read_log
from oodida.hw.source import FrameSource

logger = logging.getLogger(__name__)

# Waits shorter than this are skipped: a frame 0.5 ms early is harmless, and a
# syscall per frame of a dense burst is not. Lateness never accumulates, because
# every frame is scheduled against the replay's start, not against the previous one.
_MIN_WAIT = 0.0005

# Pass-to-pass gap for a log whose frames all share one timestamp.
_FALLBACK_GAP = 0.001

# Frames looked at per wake-up when paced: the next batch is what is due now, and at
# real-time speeds that is a handful, so there is no point in scanning thousands.
_PACED_LOOKAHEAD = 512


class _Frame(NamedTuple):
    timestamp: float
    arbitration_id: int
    data: bytes
    channel: Any  # what python-can gives: a str for candump logs, an int or None for others
    dlc: int
    is_extended_id: bool
    is_remote_frame: bool
    is_error_frame: bool
    is_fd: bool
    bitrate_switch: bool
    error_state_indicator: bool


@dataclass(frozen=True, slots=True)
class _Recording:
    frames: tuple[_Frame, ...]
    first: float
    last: float
    gap: float  # median positive gap between frames: the pause between two passes
    ordered: bool  # timestamps never decrease (always, since frames are sorted on reading)
    unreadable: int = 0  # lines (or a binary log's tail) that could not be read
    problems: tuple[str, ...] = ()  # the first of those, "file:line: reason"
    reordered: int = 0  # frames that were out of timestamp order in the file
    time_base: str = ABSOLUTE
    # Column form of the frames per channel (None: all), built on first use and shared
    # by every replay of this recording, as a simulated fleet replays one log many times.
    columns: dict[str | None, FrameBatch] = field(default_factory=dict, compare=False)

    @property
    def duration(self) -> float:
        return self.last - self.first

    @property
    def channels(self) -> list[str]:
        return sorted({str(frame.channel) for frame in self.frames})


class LogReplay(FrameSource):
    """Frames of a log file (any format `can.LogReader` reads), paced like the recording.

    `speed` 1 is real time, 2 twice as fast, 0 as fast as the consumer takes them.
    `offset` seconds into the log is where the replay starts. With `loop`, the replay
    restarts from the beginning of the log after its end, and every pass shifts the
    timestamps by the log's period (its duration plus one median inter-frame gap), so
    that timestamps (signal time, not wall-clock time) always increase; an offset
    beyond the end wraps modulo that period. Each call of `frames` replays afresh
    from `offset`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        speed: float = 1.0,
        offset: float = 0.0,
        loop: bool = False,
        channel: str | None = None,
    ) -> None:
        if not speed >= 0:  # also refuses NaN
            raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed!r}")
        if not offset >= 0:
            raise ValueError(f"offset must be >= 0 seconds, got {offset!r}")
        self._path = os.fspath(path)
        self._speed = float(speed)
        self._loop = bool(loop)
        self._channel = None if channel is None else str(channel)
        self._closed = False
        self._ended = False

        self._recording = _load(self._path)
        recording = self._recording
        if channel is None:
            self._frames = recording.frames
        else:
            # As text: .asc, .blf and .trc logs give integer channels, the config a string.
            self._frames = tuple(frame for frame in recording.frames if str(frame.channel) == self._channel)
            if not self._frames:
                raise SourceError(
                    f"log {self._path} has no frames on channel {channel!r}; "
                    f"its channels are {', '.join(recording.channels)}"
                )
        self._period = recording.duration + recording.gap
        if offset > recording.duration:
            if not loop:
                raise ValueError(
                    f"offset {offset} s is past the end of {self._path} "
                    f"(duration {recording.duration:.3f} s); use loop=True to wrap around"
                )
            offset %= self._period
        self._offset = float(offset)
        self._start_index = _first_at_or_after(
            self._frames, recording.first + self._offset, ordered=recording.ordered
        )

    @property
    def duration(self) -> float:
        """Seconds from the log's first frame to its last (all channels)."""
        return self._recording.duration

    @property
    def ended(self) -> bool:
        return self._ended or self._closed

    def describe(self) -> str:
        recording = self._recording
        what = f"channel {self._channel}" if self._channel is not None else "all channels"
        speed = "as fast as possible" if self._speed == 0 else f"speed {self._speed:g}"
        loop = ", looping" if self._loop else ""
        notes = ""
        if recording.time_base != ABSOLUTE:
            notes += f", times {recording.time_base}"
        if recording.unreadable:
            notes += f", {recording.unreadable} unreadable lines skipped (first: {recording.problems[0]})"
        if recording.reordered:
            notes += f", {recording.reordered} frames out of timestamp order, replayed in order"
        return (
            f"log replay of {self._path} ({what}, {len(self._frames)} frames, "
            f"{recording.duration:.1f} s) at {speed} from offset {self._offset:g} s{loop}{notes}"
        )

    @property
    def unreadable(self) -> int:
        """Lines of the log (or a binary log's cut-off tail) that could not be read."""
        return self._recording.unreadable

    @property
    def time_base(self) -> str:
        """"absolute", or how the log's times are relative (an .asc without a start time)."""
        return self._recording.time_base

    def close(self) -> None:
        self._closed = True

    def frames(self, stop: threading.Event) -> Iterator[can.Message]:
        if self._closed:
            raise SourceError(f"{self.describe()} is closed")
        frames = self._frames
        speed = self._speed
        origin = self._recording.first + self._offset  # signal time at wall time `started`
        started = time.monotonic()
        passes = 0
        shift = 0.0
        index = self._start_index
        while True:
            for position in range(index, len(frames)):
                frame = frames[position]
                timestamp = frame.timestamp + shift
                if speed:
                    delay = started + (timestamp - origin) / speed - time.monotonic()
                    if delay > _MIN_WAIT and stop.wait(delay):
                        return
                if stop.is_set() or self._closed:
                    return
                yield _message(frame, timestamp)
            if not self._loop:
                self._ended = True
                return
            passes += 1
            shift = passes * self._period  # not a running sum: no drift over days of looping
            index = 0


    def batches(self, stop: threading.Event, max_frames: int = 4096) -> Iterator[FrameBatch]:
        """The frames of `frames`, paced alike, as slices of the log held in columns:
        at speed 0 every batch is `max_frames` long, when paced it is what is due."""
        if self._closed:
            raise SourceError(f"{self.describe()} is closed")
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames!r}")
        columns = self._columns()
        timestamps = columns.timestamps
        total = len(columns)
        speed = self._speed
        lookahead = min(max_frames, _PACED_LOOKAHEAD) if speed else max_frames
        origin = self._recording.first + self._offset
        started = time.monotonic()
        passes = 0
        shift = 0.0
        index = self._start_index
        while True:
            while index < total:
                end = min(index + lookahead, total)
                if speed:
                    # As `frames` does per frame: each is due at its own time from the
                    # start, and a batch ends before the first one not due yet.
                    delay = started + (timestamps[index:end] + shift - origin) / speed - time.monotonic()
                    early = delay > _MIN_WAIT
                    if early[0]:
                        if stop.wait(float(delay[0])):
                            return
                        continue
                    if early.any():
                        end = index + int(early.argmax())
                if stop.is_set() or self._closed:
                    return
                yield columns[index:end].shifted(shift)
                index = end
            if not self._loop:
                self._ended = True
                return
            passes += 1
            shift = passes * self._period
            index = 0

    def _columns(self) -> FrameBatch:
        cache = self._recording.columns
        if self._channel not in cache:
            cache[self._channel] = FrameBatch.from_frames(
                [(frame.timestamp, _key(frame), frame.data) for frame in self._frames]
            )
        return cache[self._channel]


def _message(frame: _Frame, timestamp: float) -> can.Message:
    """A fresh Message per yield: consumers may keep or alter what they are given."""
    return can.Message(
        timestamp=timestamp,
        arbitration_id=frame.arbitration_id,
        is_extended_id=frame.is_extended_id,
        is_remote_frame=frame.is_remote_frame,
        is_error_frame=frame.is_error_frame,
        channel=frame.channel,
        dlc=frame.dlc,
        data=frame.data,
        is_fd=frame.is_fd,
        bitrate_switch=frame.bitrate_switch,
        error_state_indicator=frame.error_state_indicator,
        check=False,
    )


def _first_at_or_after(frames: tuple[_Frame, ...], timestamp: float, *, ordered: bool) -> int:
    """Index of the first frame (in log order) stamped at or after `timestamp`.

    Logs merged from several interfaces may be slightly out of order: those are
    scanned, not bisected.
    """
    if ordered:
        return bisect.bisect_left(frames, timestamp, key=lambda frame: frame.timestamp)
    return next((i for i, frame in enumerate(frames) if frame.timestamp >= timestamp), len(frames))


def _load(path: str) -> _Recording:
    """Parse once per file version: a simulated fleet replays one log many times over."""
    try:
        status = os.stat(path)
    except FileNotFoundError as exc:
        raise SourceError(f"CAN log not found: {path}") from exc
    except OSError as exc:
        raise SourceError(f"cannot open CAN log {path}: {exc.strerror or exc}") from exc
    return _load_cached(os.path.realpath(path), status.st_mtime_ns, status.st_size)


def _key(frame: _Frame) -> int:
    """The id the decoder sees (`hw.frames.frame_id`): flagged for error and remote frames."""
    if frame.is_error_frame:
        return frame.arbitration_id | ERROR_FLAG
    if frame.is_remote_frame:
        return frame.arbitration_id | REMOTE_FLAG
    return frame.arbitration_id


@functools.lru_cache(maxsize=2)
def _load_cached(path: str, mtime_ns: int, size: int) -> _Recording:
    del mtime_ns, size  # only part of the cache key: a rewritten log is read again
    contents = read_log(path)
    frames = [
        _Frame(
            message.timestamp,
            message.arbitration_id,
            bytes(message.data),
            message.channel,
            message.dlc,
            message.is_extended_id,
            message.is_remote_frame,
            message.is_error_frame,
            message.is_fd,
            message.bitrate_switch,
            message.error_state_indicator,
        )
        for message in contents.messages
    ]
    for problem in contents.problems[:5]:
        logger.warning("CAN log: skipped what cannot be read: %s", problem)
    if contents.unreadable:
        logger.warning(
            "CAN log %s: %d unreadable lines skipped, %d frames read", path, contents.unreadable, len(frames)
        )
    if contents.time_base != ABSOLUTE:
        logger.info("CAN log %s: times are %s", path, contents.time_base)
    timestamps = [frame.timestamp for frame in frames]
    reordered = sum(1 for a, b in itertools.pairwise(timestamps) if b < a)
    if reordered:
        # Stable: frames sharing a stamp keep their file order.
        frames.sort(key=operator.attrgetter("timestamp"))
        timestamps = [frame.timestamp for frame in frames]
        logger.warning(
            "CAN log %s: %d frames out of timestamp order; replaying it in timestamp order", path, reordered
        )
    first, last = timestamps[0], timestamps[-1]
    steps = [b - a for a, b in itertools.pairwise(timestamps)]
    # Positive steps only: frames stamped in one burst share a timestamp, and a
    # zero median would make the next pass start at the very instant this one ends.
    gaps = [step for step in steps if step > 0]
    gap = statistics.median(gaps) if gaps else _FALLBACK_GAP
    logger.debug("read %d frames (%.1f s) from %s", len(frames), last - first, path)
    return _Recording(
        frames=tuple(frames),
        first=first,
        last=last,
        gap=gap,
        ordered=True,
        unreadable=contents.unreadable,
        problems=tuple(contents.problems),
        reordered=reordered,
        time_base=contents.time_base,
    )
