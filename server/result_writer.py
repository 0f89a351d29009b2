"""Results stored in one transaction per pass of the event loop, acknowledged after.

A fleet answers an iteration in a burst: thousands of results within milliseconds.
One SQLite commit per result cost more than all the rest of handling it (decoding,
checking, acknowledging), so the results that arrive in the same pass of the event
loop are written together, in one transaction (`Store.add_results`).

The invariant that makes this safe: a connection awaits `ResultWriter.add` and only
then sends its `ResultAck`, and `add` returns only once the result's transaction has
committed. A crash before the commit loses no result: none of the batch was
acknowledged, so every vehicle still holds its result in its outbox and sends it
again. A failed commit raises in every waiting connection, so none is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging

from oodida.server import metrics
from oodida.server.dbcheck import corruption
from oodida.server.storage import Store
from oodida.wire.messages import Result

log = logging.getLogger(__name__)


class ResultWriter:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[tuple[Result, bool, asyncio.Future[bool]]] = []
        self.batches = 0  # transactions committed (for tests and benchmarks)
        self.largest = 0  # the most results one transaction held

    async def add(self, result: Result, *, late: bool = False) -> bool:
        """Store `result`; returns once it is committed: True if it is new, False if
        its key was already stored. Raises what the store raised (nothing stored)."""
        loop = asyncio.get_running_loop()
        if not self._pending:
            # after the callbacks already queued for this pass: they may add more
            loop.call_soon(self._flush)
        done: asyncio.Future[bool] = loop.create_future()
        self._pending.append((result, late, done))
        return await done

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            stored = self.store.add_results([(result, late) for result, late, _ in batch])
        except Exception as exc:
            if corruption(exc) is None:  # a corrupt file is the server's to log, once (server/app.py)
                log.error("cannot store %d results (none acknowledged; the vehicles will send them again): %s",
                          len(batch), exc)
            for _, _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        self.batches += 1
        metrics.results_stored(sum(stored))
        self.largest = max(self.largest, len(batch))
        for (_, _, done), new in zip(batch, stored, strict=True):
            if not done.done():  # its connection may have been cancelled meanwhile
                done.set_result(new)
