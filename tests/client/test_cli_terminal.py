"""`oodida submit --wait` on a terminal: a progress line on stderr, rewritten in
place and cleared before each report; Ctrl-C says the assignment goes on and how to
cancel it."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from tests.client.helpers import REPO, env_of

pytestmark = pytest.mark.integration


def _read_all(fd: int, proc: subprocess.Popen, timeout: float) -> str:
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out.decode(errors="replace")


def test_submit_wait_shows_progress_on_a_terminal(fleet) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "oodida", "submit", "--signals", "SPEED", "--window", "3s", "--iterations", "2",
         "--on-board", "mean", "--wait", "--deadline", "20"],
        env=env_of(fleet), stdout=subprocess.PIPE, stderr=slave, text=True, cwd=REPO,
    )
    os.close(slave)
    try:
        shown = _read_all(master, proc, 60)
        stdout, _ = proc.communicate(timeout=30)
    finally:
        os.close(master)
    assert proc.returncode == 0, shown
    assert re.search(r"\r\x1b\[Kiteration [12] of 2: \d of 3 answered, \d+ s to the deadline", shown), repr(shown)
    assert "to the deadline" not in stdout and "\r" not in stdout  # the reports on stdout stay clean
    assert stdout.count("── assignment") == 2


def test_ctrl_c_while_waiting_says_the_assignment_goes_on(fleet) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "oodida", "submit", "--signals", "SPEED", "--window", "1s", "--iterations", "0",
         "--on-board", "mean", "--wait", "--deadline", "20"],
        env=env_of(fleet), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    first = proc.stdout.readline()  # "assignment N started on 3 vehicles: …"
    assignment = int(re.match(r"assignment (\d+) started", first).group(1))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert f"assignment {assignment} goes on" in err and f"oodida cancel {assignment}" in err
    assert "Traceback" not in err
    cancel = subprocess.run([sys.executable, "-m", "oodida", "cancel", str(assignment)], env=env_of(fleet),
                            capture_output=True, text=True, timeout=30, cwd=REPO)
    assert cancel.returncode == 0 and "cancelled" in cancel.stdout  # it was still running


def test_deploy_shows_progress_on_a_terminal_and_nothing_extra_when_piped(fleet) -> None:
    env = env_of(fleet)
    module, v2 = REPO / "examples" / "speeding.py", REPO / "examples" / "speeding_v2.py"
    submitted = subprocess.run(
        [sys.executable, "-m", "oodida", "submit", "--signals", "SPEED", "--window", "1s", "--iterations", "0",
         "--on-board-module", str(module), "--json"],
        env=env, capture_output=True, text=True, cwd=REPO, timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    assignment = str(json.loads(submitted.stdout)["assignment"])
    try:
        master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "oodida", "deploy", str(v2), "--assignment", assignment,
                                 "--on-board"], env=env, stdout=subprocess.PIPE, stderr=slave, text=True, cwd=REPO)
        os.close(slave)
        try:
            shown = _read_all(master, proc, 60)
            stdout, _ = proc.communicate(timeout=30)
        finally:
            os.close(master)
        assert proc.returncode == 0, shown + stdout
        assert re.search(r"\r\x1b\[Kdeploy: \d of 3 answered, [\d.]+ s", shown), repr(shown)
        assert "\r" not in stdout and "answered," not in stdout  # stdout keeps only the replies
        assert "of 3 run" in stdout
        piped = subprocess.run([sys.executable, "-m", "oodida", "deploy", str(module), "--assignment", assignment,
                                "--on-board"], env=env, capture_output=True, text=True, cwd=REPO, timeout=60)
        assert piped.returncode == 0, piped.stderr
        assert "answered," not in piped.stderr and "\r" not in piped.stderr + piped.stdout
    finally:
        subprocess.run([sys.executable, "-m", "oodida", "cancel", assignment], env=env, capture_output=True,
                       cwd=REPO, timeout=60)
