"""A real local fleet, a real dashboard process and a real headless Chromium.

Where Debian's chromium and chromium-driver are absent the browser tests skip, saying
how to install them; with OODIDA_REQUIRE_BROWSER=1 (.ci/run sets it once it installed
them) they fail instead, so a broken install cannot turn into a quiet skip.
Screenshots go to $OODIDA_TEST_REPORT (else the test's tmp directory).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oodida.demo import SIGNALS
from oodida.testing import LocalFleet, stop_processes
from tests.dashboard.helpers import CHROMIUM, DRIVER, VEHICLES, Dashboard, _which, need_browser, start_dashboard
from tests.fleets import FleetSpec


@pytest.fixture(scope="session")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = Path(os.environ.get("OODIDA_TEST_REPORT") or tmp_path_factory.mktemp("report")) / "dashboard"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _which(CHROMIUM)  # type: ignore[assignment]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1600,1100", "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=_which(DRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def fleet_spec() -> FleetSpec:
    """The demo's fleet for each dashboard module; no fleet started for tests that will skip."""
    return FleetSpec("dash-fleet", needs=need_browser,
                     options={"vehicles": VEHICLES, "signals": SIGNALS, "server_options": {"credential_check": 0.5}})


@pytest.fixture(scope="module")
def dashboard(fleet: LocalFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    d = start_dashboard(fleet, tmp_path_factory.mktemp("dash"))
    try:
        yield d
    finally:
        stop_processes([d.proc], 10)  # type: ignore[list-item]
