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


class FrameSource(ABC):
    """A stream of CAN frames: a bus, a log replayed, a simulator."""

    @abstractmethod
    def frames(self, stop: threading.Event) -> Iterator[can.Message]:
        """Yield frames until `stop` is set or the source ends; returns within 0.1 s of `stop`."""

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
