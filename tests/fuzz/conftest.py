"""Fixtures of the fuzz tests: the report tally, and how long a campaign runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz.report import Tally


@pytest.fixture
def tally(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tally]:
    option = request.config.getoption("--fuzz-report", default=None)  # tests/conftest.py
    path = Path(option) if option else tmp_path_factory.getbasetemp() / "fuzz-report.jsonl"
    t = Tally(request.node.name, path)
    yield t
    t.write()
    assert not t.findings, f"{len(t.findings)} finding(s): {t.findings[:5]}"
