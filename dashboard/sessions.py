"""Signed-in sessions: a random id in a cookie, the user's live connection in memory.

The dashboard keeps no password: the secret opens the connection (`Source.open`) and
is dropped. A session ends when its user signs out, when it is idle or old past its
limits, or when the server ends the connection (a revoked or expired credential);
the reason is kept for a while under the session id, so the sign-in page the browser
lands on can say why.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from oodida.dashboard.live import Live
from oodida.dashboard.source import Source

log = logging.getLogger(__name__)

ENDED_KEPT = 1000  # reasons remembered for the sign-in page, newest kept


@dataclass
class Session:
    sid: str
    source: Source
    csrf: str
    created: float
    last_seen: float
    live: Live
    flash: list[str] = field(default_factory=list)

    @property
    def identity(self) -> str:
        return self.source.identity

    @property
    def role(self) -> str:
        return self.source.role

    @property
    def analyst(self) -> bool:
        return self.source.role == "analyst"


class Sessions:
    def __init__(self, *, idle: float, max_age: float, refresh: float) -> None:
        self.idle = idle
        self.max_age = max_age
        self.refresh = refresh
        self._live: dict[str, Session] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()
        self._watchers: dict[str, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._live)

    def all(self) -> list[Session]:
        return list(self._live.values())

    def create(self, source: Source) -> Session:
        now = time.time()
        sid = secrets.token_urlsafe(32)
        session = Session(sid, source, secrets.token_urlsafe(32), now, now, Live(source, refresh=self.refresh))
        self._live[sid] = session
        self._watchers[sid] = asyncio.create_task(self._watch(session))
        log.info("%s %s signed in", source.role, source.identity)
        return session

    async def _watch(self, session: Session) -> None:
        """End the session when the server ends the connection."""
        await session.source.ended.wait()
        if session.sid in self._live:
            await self.end(session.sid, session.source.reason or "the connection to the server ended")

    def get(self, sid: str | None, *, touch: bool = True) -> Session | None:
        """The live session of this id, or None (then `ended_reason` may say why)."""
        if sid is None:
            return None
        session = self._live.get(sid)
        if session is None:
            return None
        now = time.time()
        expired = self.expired(session, now)
        if expired:
            asyncio.get_running_loop().create_task(self.end(sid, expired))
            return None
        if touch:
            session.last_seen = now
        return session

    def expired(self, session: Session, now: float) -> str | None:
        if now - session.created > self.max_age:
            return f"the session expired: signed in more than {self.max_age:g} s ago; sign in again"
        if now - session.last_seen > self.idle:
            return f"the session expired: idle for more than {self.idle:g} s; sign in again"
        return None

    def ended_reason(self, sid: str | None) -> str | None:
        return None if sid is None else self._ended.get(sid)

    def forget(self, sid: str | None) -> None:
        if sid is not None:
            self._ended.pop(sid, None)

    async def end(self, sid: str, reason: str) -> None:
        session = self._live.pop(sid, None)
        if session is None:
            return
        self._ended[sid] = reason
        while len(self._ended) > ENDED_KEPT:
            self._ended.popitem(last=False)
        log.info("session of %s %s ended: %s", session.role, session.identity, reason)
        session.live.end(reason)
        watcher = self._watchers.pop(sid, None)
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
        await session.live.close()
        await session.source.close()

    async def reap(self) -> None:
        """Every second: end the sessions past their limits (their open pages learn it
        through their event streams and go to the sign-in page)."""
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for sid, session in list(self._live.items()):
                if session.live.watching:
                    session.last_seen = now  # a page left open is not idle
                reason = self.expired(session, now)
                if reason:
                    await self.end(sid, reason)

    async def close(self) -> None:
        for sid in list(self._live):
            await self.end(sid, "the dashboard stopped")

    def stats(self) -> dict[str, Any]:
        return {"live": len(self._live), "ended": len(self._ended)}
