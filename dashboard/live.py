"""One session's live view of the server: status while a page watches, and each
watched assignment's iterations as they close.

Nothing is asked of the server while nobody looks: the status poll runs while at
least one fleet or assignments page is open, and an assignment's results stream (the
server pushes each iteration as it closes) while its page is open, plus a while
after so that going back and forth does not re-read the whole history. Watchers get
a wake-up in a queue of one (updates coalesce; a slow browser never piles them up)
and render from the current state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from dashboard.source import SessionEnded, Source, SourceError
from dashboard.views import FleetTracker, VehicleRow

log = logging.getLogger(__name__)

VERSIONS_EVERY = 2.0  # s between version-table reads of a watched running assignment (deploys show up)
KEEP_FOLLOWING = 60.0  # s an assignment is followed after its last page closed


@dataclass
class Followed:
    assignment: int
    reports: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    error: str | None = None
    watchers: int = 0
    last_watched: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    loaded: asyncio.Event = field(default_factory=asyncio.Event)


class Live:
    def __init__(self, source: Source, *, refresh: float = 1.0) -> None:
        self.source = source
        self.refresh = refresh
        self.tracker = FleetTracker()
        self.status: dict[str, Any] | None = None
        self.rows: list[VehicleRow] = []
        self.status_error: str | None = None
        self.versions: dict[int, list[dict[str, Any]]] = {}  # per assignment, for the assignments page
        self.followed: dict[int, Followed] = {}
        self.ended: str | None = None
        self._queues: dict[asyncio.Queue[str], str | int] = {}  # watcher -> "fleet" or an assignment
        self._poller: asyncio.Task[None] | None = None
        self._versions_seen: dict[int, tuple[str, int]] = {}

    @property
    def watching(self) -> bool:
        return bool(self._queues)

    # --- status ------------------------------------------------------------------------------

    async def refresh_status(self) -> None:
        try:
            self.status = await self.source.status()
            self.status_error = None
        except SessionEnded:
            raise
        except SourceError as exc:
            self.status_error = str(exc)
            return
        self.rows = self.tracker.update(self.status)
        for a in self.status["assignments"]:
            key = (a["state"], a["completed"])
            if self._versions_seen.get(a["assignment"]) != key:
                try:
                    self.versions[a["assignment"]] = await self.source.versions(a["assignment"])
                    self._versions_seen[a["assignment"]] = key
                except SourceError as exc:
                    log.debug("versions of %d: %s", a["assignment"], exc)

    async def _poll(self) -> None:
        try:
            while self._queues:
                await self.refresh_status()
                self._wake(lambda what: True)
                await asyncio.sleep(self.refresh)
        except SessionEnded:
            pass
        finally:
            self._poller = None

    # --- assignments ------------------------------------------------------------------------------

    def follow(self, assignment: int) -> Followed:
        f = self.followed.get(assignment)
        if f is None or (f.task is None and f.end is None):
            f = self.followed[assignment] = Followed(assignment)
            f.task = asyncio.create_task(self._follow(f))
        return f

    async def _follow(self, f: Followed) -> None:
        try:
            f.versions = await self.source.versions(f.assignment)
            stream = self.source.follow(f.assignment)
            f.loaded.set()  # history arrives first; the page renders what is there
            pending = asyncio.ensure_future(anext(stream))
            while True:
                done, _ = await asyncio.wait({pending}, timeout=VERSIONS_EVERY)
                if not done:
                    if f.watchers == 0 and time.monotonic() - f.last_watched > KEEP_FOLLOWING:
                        pending.cancel()
                        await stream.aclose()
                        break
                    versions = await self.source.versions(f.assignment)
                    if versions != f.versions:
                        f.versions = versions
                        self._wake(lambda what: what == f.assignment)
                    continue
                item = pending.result()
                if item.get("end"):
                    f.end = item
                    f.versions = await self.source.versions(f.assignment)
                    self._wake(lambda what: what == f.assignment)
                    break
                f.reports.append(item)
                if item.get("iteration") and f.versions and _needs_versions(item, f.versions):
                    f.versions = await self.source.versions(f.assignment)
                self._wake(lambda what: what == f.assignment)
                pending = asyncio.ensure_future(anext(stream))
        except (SourceError, StopAsyncIteration) as exc:
            f.error = str(exc) or "the results stream ended"
            self._wake(lambda what: what == f.assignment)
        finally:
            f.loaded.set()
            f.task = None
            if f.end is None:
                self.followed.pop(f.assignment, None)  # followed again from the start next time

    # --- watchers ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watch(self, what: str | int) -> AsyncIterator[asyncio.Queue[str]]:
        """A queue woken whenever what the page shows changed; 'ended' when the
        session ended."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self._queues[queue] = what
        f = self.follow(what) if isinstance(what, int) else None
        if f is not None:
            f.watchers += 1
        if self._poller is None:  # every page shows some of the status (names, states, progress)
            self._poller = asyncio.create_task(self._poll())
        if self.ended is not None:
            queue.put_nowait("ended")
        try:
            yield queue
        finally:
            self._queues.pop(queue, None)
            if f is not None:
                f.watchers -= 1
                f.last_watched = time.monotonic()

    def _wake(self, wanted: Any) -> None:
        for queue, what in self._queues.items():
            if (what in ("fleet", "assignments") or wanted(what)) and queue.empty():
                queue.put_nowait("changed")

    def end(self, reason: str) -> None:
        self.ended = reason
        for queue in self._queues:
            with contextlib.suppress(asyncio.QueueFull):
                queue.get_nowait() if queue.full() else None
                queue.put_nowait("ended")

    def stop(self) -> None:
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait("stop")

    async def close(self) -> None:
        tasks = [t for t in [self._poller, *(f.task for f in self.followed.values())] if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


def _needs_versions(report: dict[str, Any], versions: list[dict[str, Any]]) -> bool:
    """A version-table read when this iteration ran code the table does not know as
    serving (a deploy took over): the markers then move to the right iteration."""
    hashes = {report.get("code_hash"), report.get("off_board_hash")} - {None}
    served = {v["code_hash"] for v in versions if report["iteration"] in (v.get("iterations") or [])}
    return bool(hashes - served - {h for h in hashes if str(h).startswith("builtin")})
