"""Backends the store tests run against, one param each (issue 16: the same tests for
every implementation of `server.storage.Store`, as python-can's back-to-back suite)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from oodida.server.storage import Store
from oodida.server.store import SqliteStore

StoreFactory = Callable[[Path], Store]


# a `postgresql` param goes beside `sqlite`: a factory opening the same logical database
# again for the same `where`, so the reopen tests hold for it too
@pytest.fixture(params=["sqlite"])
def store_factory(request: pytest.FixtureRequest) -> StoreFactory:
    """Opens (or reopens) the store named by `where`."""
    assert request.param == "sqlite"
    return SqliteStore
