"""A real local fleet, a real dashboard process and a real headless Chromium.

Where Debian's chromium and chromium-driver are absent the browser tests skip, saying
how to install them; with OODIDA_REQUIRE_BROWSER=1 (.ci/run sets it once it installed
them) they fail instead, so a broken install cannot turn into a quiet skip.
Screenshots go to $OODIDA_TEST_REPORT (else the test's tmp directory).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oodida.demo import SIGNALS
from oodida.testing import LocalFleet, stop_processes
from tests.integration.conftest import start_connected

INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = ("chromedriver",)
VEHICLES = 3


def _which(names: tuple[str, ...]) -> str | None:
    for name in names:
        path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if path:
            return path
    return None


def browser_problem() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[test]'"
    if _which(CHROMIUM) is None or _which(DRIVER) is None:
        return f"Chromium and its driver are not installed: {INSTALL}"
    return None


def need_browser() -> None:
    problem = browser_problem()
    if problem is None:
        return
    if os.environ.get("OODIDA_REQUIRE_BROWSER") == "1":
        pytest.fail(f"OODIDA_REQUIRE_BROWSER=1 but {problem}")
    pytest.skip(problem)


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
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    need_browser()  # no fleet started for tests that will skip
    fleet = LocalFleet(tmp_path_factory.mktemp("dash-fleet"), vehicles=VEHICLES, signals=SIGNALS,
                       server_options={"credential_check": 0.5})
    try:
        start_connected(fleet)
        yield fleet
    finally:
        fleet.stop()


@dataclass
class Dashboard:
    url: str
    proc: subprocess.Popen[str]
    log: Path


def start_dashboard(fleet: LocalFleet, workdir: Path, *extra: str) -> Dashboard:
    ca = fleet.deployment.server_config.parent / "ca.pem"
    log = workdir / f"dashboard-{len(list(workdir.glob('dashboard-*.log')))}.log"
    err = open(log, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "oodida", "dashboard", "--listen", "127.0.0.1:0", "--server", f"127.0.0.1:{fleet.port}",
         "--ca", str(ca), "--log-level", "info", *extra],
        stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
    )
    err.close()
    assert proc.stdout is not None
    with proc.stdout:  # it prints its address, then nothing more on stdout
        line = proc.stdout.readline()
    m = re.search(r"(https?://\S+?)/? ", line)
    if not m:
        proc.kill()
        raise AssertionError(f"dashboard did not start: {line!r} {log.read_text()}")
    return Dashboard(m.group(1), proc, log)


@pytest.fixture(scope="module")
def dashboard(fleet: LocalFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    d = start_dashboard(fleet, tmp_path_factory.mktemp("dash"))
    try:
        yield d
    finally:
        stop_processes([d.proc], 10)  # type: ignore[list-item]


def secret_of(path: Path) -> str:
    return str(tomllib.loads(path.read_text())["secret"])
