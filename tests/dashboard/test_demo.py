"""`oodida demo --dashboard`: the dashboard's address printed, up while the demo runs,
and stopped with everything else on Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.helpers import processes_mentioning

pytestmark = pytest.mark.integration


def test_demo_prints_the_dashboard_keeps_it_up_and_stops_it(tmp_path):
    workdir = tmp_path / "demo"
    with subprocess.Popen(
        [sys.executable, "-m", "oodida", "demo", "--dashboard", "--workdir", str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as demo:
        try:
            assert demo.stdout is not None
            url = None
            for line in demo.stdout:
                if found := re.match(r"oodida dashboard: (http://127\.0\.0\.1:\d+)/", line):
                    url = found.group(1)
                if line.startswith("assignment 1"):  # the demo goes on with the dashboard up
                    break
            assert url is not None
            page = urllib.request.urlopen(f"{url}/signin", timeout=10).read().decode()
            assert "Sign in" in page and 'name="secret"' in page
            demo.send_signal(signal.SIGINT)
            assert demo.wait(30) == 130
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
    deadline = time.monotonic() + 10
    while processes_mentioning(str(workdir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(str(workdir)) == []  # the dashboard too (its --ca is in the work dir)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/signin", timeout=2)
