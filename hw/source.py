"""The one interface every frame source offers to the agent's reader threads.

A source is consumed by a dedicated thread that loops over `frames(stop)`; the agent
stops it by setting `stop`, joins the thread, then calls `close()`. A blocking
generator (not callbacks, not asyncio) because python-can's `recv` blocks, log replay
sleeps, and one thread per bus keeps a slow decoder from delaying another bus.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from types import TracebackType

import can

from oodida.hw.frames import FrameBatch, FrameRows, batch_of_messages


class FrameSource(ABC):
    """A stream of CAN frames: a bus, a log replayed, a simulator."""

    @abstractmethod
    def frames(self, stop: threading.Event) -> Iterator[can.Message]:
        """Yield frames until `stop` is set or the source ends; returns within 0.1 s of `stop`."""

    def batches(self, stop: threading.Event, max_frames: int = 4096) -> Iterator[FrameBatch | FrameRows]:
        """Frames as they come, in batches of at most `max_frames`, never held back.

        A batch holds what is available at once (a replay's frames already due, a
        bus's queued frames), so batching adds no latency: on a quiet source each
        batch is one frame. This default knows no better than one frame per batch;
        sources that can see their backlog override it.
        """
        for message in self.frames(stop):
            yield batch_of_messages([message])

    @abstractmethod
    def close(self) -> None:
        """Release the bus or file; safe to call twice. Set `stop` and join the reader first."""

    @abstractmethod
    def describe(self) -> str:
        """One line for logs and `oodida status`: what this source reads and how."""

    @property
    @abstractmethod
    def ended(self) -> bool:
        """True once no more frames will come (a replay ran out, or the source was closed)."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
