"""What the tests in tests/dashboard share (moved out of conftest.py, so that test modules
import a helper module, not a conftest)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from oodida.testing import LocalFleet

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


def secret_of(path: Path) -> str:
    return str(tomllib.loads(path.read_text())["secret"])
