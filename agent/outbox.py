"""Results waiting for the server's acknowledgement.

A result stays here from the moment it is computed until the server acknowledges
it, and is sent again on every reconnect: the server stores each (assignment,
iteration, vehicle) once, so resending is safe. Kept in memory for now; the SQLite
outbox that survives a restart replaces this class behind the same methods.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from wire.messages import Result

log = logging.getLogger(__name__)

Key = tuple[int, int]  # (assignment, iteration)


class Outbox:
    def __init__(self, max_results: int = 10_000) -> None:
        self.max_results = max_results
        self._results: OrderedDict[Key, Result] = OrderedDict()
        self.dropped = 0

    def put(self, result: Result) -> None:
        self._results[(result.assignment, result.iteration)] = result
        while len(self._results) > self.max_results:
            (a, i), _ = self._results.popitem(last=False)
            self.dropped += 1
            log.error("outbox full (%d results): dropped the result of assignment %d iteration %d", self.max_results, a, i)

    def ack(self, key: Key) -> None:
        self._results.pop(key, None)

    def __contains__(self, key: Key) -> bool:
        return key in self._results

    def pending(self) -> list[Result]:
        return list(self._results.values())

    def __len__(self) -> int:
        return len(self._results)
