"""A live CAN bus through python-can, as a frame source.

Only the arguments named here reach python-can, and its configuration files and
environment variables are ignored (`ignore_config=True`): what a vehicle reads must
be what its agent's config says, not what a stray ~/.canrc adds. python-can's errors
are translated into `SourceError` here, at the boundary, once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import can

from oodida.hw.errors import SourceError
from oodida.hw.frames import FrameBatch, FrameRows, batch_of_messages
from oodida.hw.source import FrameSource

logger = logging.getLogger(__name__)

# How long one `recv` may block: the bound on how late `stop` is noticed.
_RECV_TIMEOUT = 0.1


class BusSource(FrameSource):
    """Frames received from one CAN interface; `can_filters` go to the kernel where it can."""

    def __init__(
        self,
        interface: str,
        channel: str | int,
        *,
        can_filters: Sequence[dict[str, Any]] | None = None,
        bitrate: int | None = None,
        receive_own_messages: bool = False,
    ) -> None:
        self._interface = interface
        self._channel = channel
        self._filtered = bool(can_filters)
        self._closed = False
        self._failed = False
        options: dict[str, Any] = {}
        if bitrate is not None:
            options["bitrate"] = bitrate
        if receive_own_messages:
            options["receive_own_messages"] = True
        try:
            self._bus = can.Bus(
                interface=interface,
                channel=channel,
                can_filters=list(can_filters) if can_filters else None,
                ignore_config=True,
                **options,
            )
        except NotImplementedError as exc:
            # An unknown interface name is a plain NotImplementedError; a known one
            # whose driver library is missing is CanInterfaceNotImplementedError.
            known = ", ".join(sorted(can.VALID_INTERFACES))
            raise SourceError(f"cannot open CAN bus {interface}:{channel}: {exc} (known: {known})") from exc
        except (can.CanError, OSError, ImportError) as exc:
            # Some backends raise OSError for a missing device instead of a CanError.
            raise SourceError(f"cannot open CAN bus {interface}:{channel}: {exc}") from exc

    @property
    def ended(self) -> bool:
        return self._closed or self._failed

    def describe(self) -> str:
        filtered = ", filtered" if self._filtered else ""
        return f"CAN bus {self._interface}:{self._channel}{filtered}"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bus.shutdown()

    def frames(self, stop: threading.Event) -> Iterator[can.Message]:
        if self._closed:
            raise SourceError(f"{self.describe()} is closed")
        while not stop.is_set():
            message = self._receive(stop, _RECV_TIMEOUT)
            if message is _ENDED:
                return
            if isinstance(message, can.Message):
                yield message

    def batches(self, stop: threading.Event, max_frames: int = 4096) -> Iterator[FrameBatch | FrameRows]:
        """Waits for a frame as `frames` does, then takes what else is queued already."""
        if self._closed:
            raise SourceError(f"{self.describe()} is closed")
        while not stop.is_set():
            message = self._receive(stop, _RECV_TIMEOUT)
            if message is _ENDED:
                return
            if message is None:
                continue
            messages = [message]
            more: can.Message | None | object = None
            failure: SourceError | None = None
            while len(messages) < max_frames:
                try:
                    more = self._receive(stop, 0.0)
                except SourceError as exc:
                    failure = exc  # after the frames already taken are delivered
                    break
                if more is None or more is _ENDED:
                    break
                messages.append(more)
            yield batch_of_messages(messages)  # type: ignore[arg-type]
            if failure is not None:
                raise failure
            if more is _ENDED:
                return

    def _receive(self, stop: threading.Event, timeout: float) -> can.Message | None | object:
        """One frame, None when none came within `timeout`, `_ENDED` when closed under us."""
        try:
            message = self._bus.recv(timeout=timeout)
        except (can.CanError, OSError) as exc:
            if self._closed or stop.is_set():
                return _ENDED  # closed under us during shutdown: not a failure
            self._failed = True
            raise SourceError(f"{self.describe()} failed: {exc}") from exc
        if message is not None and message.channel is None:
            # Downstream picks the DBC by channel; some backends leave it unset.
            message.channel = self._channel
        return message


_ENDED = object()
