"""Many CAN frames as four numpy arrays, the unit of batch decoding.

A `can.Message` per frame costs microseconds to build and to read; a source that
delivers thousands of frames at once (a log replayed fast, a busy bus drained) hands
them over as columns instead, so the decoder can work on each message id's frames
with a few array operations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import can
import numpy as np

# Payload columns are at least this wide, so every classic frame reads as one uint64.
MIN_WIDTH = 8

# Error and remote-request frames travel with their kind in the id's spare bits, as
# SocketCAN's can_id carries them (CAN_ERR_FLAG, CAN_RTR_FLAG): no DBC id has these
# bits, so the decoder's lookup misses them for free and counts them as what they are.
ERROR_FLAG = 0x20000000
REMOTE_FLAG = 0x40000000


def frame_id(message: can.Message) -> int:
    """The id a frame is decoded under: its arbitration id, flagged if it carries no data."""
    if message.is_error_frame:
        return message.arbitration_id | ERROR_FLAG
    if message.is_remote_frame:
        return message.arbitration_id | REMOTE_FLAG
    return message.arbitration_id


@dataclass(frozen=True, slots=True)
class FrameBatch:
    """Frames in arrival order: `data` rows are payloads zero-padded to one width.

    `lengths` are the payloads' true lengths (what `len(message.data)` says), which
    the decoder checks against the DBC exactly as it does for a single frame.
    """

    timestamps: np.ndarray  # float64, (n,)
    # int64, (n,): arbitration ids without the IDE bit (`frame_id`: flagged for error and remote frames)
    ids: np.ndarray
    data: np.ndarray  # uint8, (n, width >= 8)
    lengths: np.ndarray  # int64, (n,)

    def __post_init__(self) -> None:
        n = self.timestamps.shape[0]
        if self.ids.shape != (n,) or self.lengths.shape != (n,):
            raise ValueError("timestamps, ids and lengths must be 1-d arrays of one length")
        if self.data.ndim != 2 or self.data.shape[0] != n or self.data.shape[1] < MIN_WIDTH:
            raise ValueError(f"data must be (n, width >= {MIN_WIDTH}) uint8, got {self.data.shape}")
        if self.data.dtype != np.uint8:
            raise TypeError(f"data must be uint8, got {self.data.dtype}")

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    def __getitem__(self, index: slice) -> FrameBatch:
        """Frames `index` (a slice): views, not copies."""
        return FrameBatch(self.timestamps[index], self.ids[index], self.data[index], self.lengths[index])

    def shifted(self, seconds: float) -> FrameBatch:
        """The same frames stamped `seconds` later (a looping replay's later passes)."""
        if seconds == 0:
            return self
        return FrameBatch(self.timestamps + seconds, self.ids, self.data, self.lengths)

    def rows(self) -> Iterator[tuple[float, int, bytes]]:
        """(timestamp, id, payload) per frame, for the per-frame decoder."""
        data = self.data
        for index, (timestamp, frame_id, length) in enumerate(
            zip(self.timestamps.tolist(), self.ids.tolist(), self.lengths.tolist(), strict=True)
        ):
            yield timestamp, frame_id, data[index, :length].tobytes()

    @classmethod
    def from_frames(cls, frames: Sequence[tuple[float, int, bytes]]) -> FrameBatch:
        """From (timestamp, id, payload) tuples."""
        n = len(frames)
        lengths = np.fromiter((len(payload) for _, _, payload in frames), dtype=np.int64, count=n)
        width = max(MIN_WIDTH, int(lengths.max()) if n else 0)
        if n and (lengths == width).all():
            data = np.frombuffer(b"".join(payload for _, _, payload in frames), dtype=np.uint8).reshape(n, width)
        else:
            data = np.frombuffer(
                b"".join(payload.ljust(width, b"\0") for _, _, payload in frames), dtype=np.uint8
            ).reshape(n, width)
        return cls(
            np.fromiter((t for t, _, _ in frames), dtype=np.float64, count=n),
            np.fromiter((i for _, i, _ in frames), dtype=np.int64, count=n),
            data,
            lengths,
        )

    @classmethod
    def from_messages(cls, messages: Sequence[can.Message]) -> FrameBatch:
        """From python-can messages (their `data`, not their `dlc`, gives the length)."""
        return cls.from_frames([(m.timestamp, frame_id(m), bytes(m.data)) for m in messages])


COLUMNS_FROM = 64  # frames: below this, columns cost more than the batch decoder saves


@dataclass(frozen=True, slots=True)
class FrameRows:
    """A few frames as they came, (timestamp, id, payload) each. A bus at a modest
    rate delivers a handful of frames per wake-up; turning them into numpy columns
    only to read them back row by row for the per-frame decoder cost more than the
    decoding (measured by bench/ingest.py), so below `COLUMNS_FROM` they stay rows."""

    frames: list[tuple[float, int, bytes]]

    def __len__(self) -> int:
        return len(self.frames)

    def rows(self) -> Iterator[tuple[float, int, bytes]]:
        return iter(self.frames)


def batch_of_messages(messages: Sequence[can.Message]) -> FrameBatch | FrameRows:
    """Columns for many frames, rows for a few (see `FrameRows`)."""
    # frame_id inlined: this runs per frame of a live bus
    frames = [
        (m.timestamp, frame_id(m) if m.is_error_frame or m.is_remote_frame else m.arbitration_id, bytes(m.data))
        for m in messages
    ]
    return FrameBatch.from_frames(frames) if len(frames) >= COLUMNS_FROM else FrameRows(frames)


__all__ = [
    "COLUMNS_FROM",
    "ERROR_FLAG",
    "MIN_WIDTH",
    "REMOTE_FLAG",
    "FrameBatch",
    "FrameRows",
    "batch_of_messages",
    "frame_id",
]
