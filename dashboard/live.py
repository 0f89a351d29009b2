"""One session's live view of the server: status while a page watches, and each
watched assignment's iterations as they close.

Nothing is asked of the server while nobody looks: the status poll runs while at
least one fleet or assignments page is open, and an assignment's results stream (the
server pushes each iteration as it closes) while its page is open, plus a while
after so that going back and forth does not re-read the whole history. A watcher
is woken with the reasons gathered since it last looked ("status", "data", "ended",
"stop"): updates coalesce, a slow browser never piles them up, and a page re-renders
only the fragments the reasons touch, from the current state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from oodida.dashboard.source import SessionEnded, Source, SourceError
from oodida.dashboard.views import FleetTracker, VehicleRow

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


class Watcher:
    def __init__(self, what: str | int) -> None:
        self.what = what
        self.reasons: set[str] = set()
        self._event = asyncio.Event()

    def wake(self, reason: str) -> None:
        self.reasons.add(reason)
        self._event.set()

    async def next(self, timeout: float) -> set[str]:
        """The reasons since the last call; empty after `timeout` s of nothing."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return set()
        self._event.clear()
        reasons, self.reasons = self.reasons, set()
        return reasons


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
        self._watchers: set[Watcher] = set()
        self._poller: asyncio.Task[None] | None = None
        self._versions_seen: dict[int, tuple[str, int]] = {}

    @property
    def watching(self) -> bool:
        return bool(self._watchers)

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
            while self._watchers:
                await self.refresh_status()
                self._wake("status")
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
            pending = asyncio.ensure_future(anext(stream))
            while True:
                # the page waits for `loaded`: the history's first iteration, or a
                # moment of nothing (no iteration closed yet); the rest comes live
                done, _ = await asyncio.wait({pending}, timeout=VERSIONS_EVERY if f.loaded.is_set() else 0.5)
                if not done and not f.loaded.is_set():
                    f.loaded.set()
                    continue
                if not done:
                    if f.watchers == 0 and time.monotonic() - f.last_watched > KEEP_FOLLOWING:
                        pending.cancel()
                        await stream.aclose()
                        break
                    versions = await self.source.versions(f.assignment)
                    if versions != f.versions:
                        f.versions = versions
                        self._wake("data", f.assignment)
                    continue
                item = pending.result()
                if item.get("end"):
                    f.end = item
                    f.versions = await self.source.versions(f.assignment)
                    self._wake("data", f.assignment)
                    break
                f.reports.append(item)
                f.loaded.set()
                if item.get("iteration") and f.versions and _needs_versions(item, f.versions):
                    f.versions = await self.source.versions(f.assignment)
                self._wake("data", f.assignment)
                pending = asyncio.ensure_future(anext(stream))
        except (SourceError, StopAsyncIteration) as exc:
            f.error = str(exc) or "the results stream ended"
            self._wake("data", f.assignment)
        finally:
            f.loaded.set()
            f.task = None
            if f.end is None:
                self.followed.pop(f.assignment, None)  # followed again from the start next time

    # --- watchers ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watch(self, what: str | int) -> AsyncIterator[Watcher]:
        """A watcher woken whenever what the page shows changed."""
        watcher = Watcher(what)
        self._watchers.add(watcher)
        f = self.follow(what) if isinstance(what, int) else None
        if f is not None:
            f.watchers += 1
        if self._poller is None:  # every page shows some of the status (names, states, progress)
            self._poller = asyncio.create_task(self._poll())
        watcher.wake("ended" if self.ended is not None else "data")  # a first full render: what came since the page
        try:
            yield watcher
        finally:
            self._watchers.discard(watcher)
            if f is not None:
                f.watchers -= 1
                f.last_watched = time.monotonic()

    def _wake(self, reason: str, assignment: int | None = None) -> None:
        """Status reaches every page; an assignment's data its own page and the
        assignments list (not the fleet page, which shows none of it)."""
        for w in self._watchers:
            if assignment is None or w.what == assignment or w.what == "assignments":
                w.wake(reason)

    def end(self, reason: str) -> None:
        self.ended = reason
        for w in self._watchers:
            w.wake("ended")

    def stop(self) -> None:
        for w in self._watchers:
            w.wake("stop")

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
