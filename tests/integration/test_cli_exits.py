"""`oodida submit --wait` and `oodida status` against a real local fleet, in real
processes: 0 when every iteration is complete, 3 when one was partial, 130 on Ctrl-C
with the way to cancel, status counting partial iterations, and no traceback on a
closed pipe or an ASCII terminal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.fleets import FleetSpec, start_first_agent

pytestmark = pytest.mark.integration


# credentials for two vehicles, only car-1 running: car-2 never answers
FLEET = FleetSpec.of("exits", start_first_agent, vehicles=2, speed=0.0, loop=True, signals=["SPEED"])


def oodida(fleet, *args: str, env=None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OODIDA_CREDENTIALS": str(fleet.analyst_credentials), **(env or {})}
    return subprocess.run([sys.executable, "-m", "oodida", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


SUBMIT = ("submit", "--signals", "SPEED", "--window", "latest:1s", "--on-board", "mean", "--wait")


def test_every_iteration_complete_exits_0(fleet) -> None:
    done = oodida(fleet, *SUBMIT, "--vehicles", "car-1", "--iterations", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("complete") == 2


def test_a_partial_iteration_exits_3_and_status_counts_it(fleet) -> None:
    done = oodida(fleet, *SUBMIT, "--vehicles", "car-1,car-2", "--deadline", "1.5")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "partial" in done.stdout
    number = done.stdout.split()[1]
    status = oodida(fleet, "status")
    assert status.returncode == 0, status.stderr
    line = next(line for line in status.stdout.splitlines() if line.split()[:1] == [number])
    assert "1/1 iterations, 1 partial" in line


def test_status_on_an_ascii_terminal_and_through_a_closed_pipe(fleet) -> None:
    done = oodida(fleet, "status", env={"LANG": "C", "LC_ALL": "C", "PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "vehicles connected: 1" in done.stdout and done.stdout.isascii()
    env = {**os.environ, "OODIDA_CREDENTIALS": str(fleet.analyst_credentials)}
    proc = subprocess.Popen([sys.executable, "-m", "oodida", "status"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141 and b"Traceback" not in err and b"Exception ignored" not in err


def test_ctrl_c_on_submit_wait_says_the_assignment_goes_on_and_how_to_cancel_it_exit_130(fleet) -> None:
    env = {**os.environ, "OODIDA_CREDENTIALS": str(fleet.analyst_credentials)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "oodida", "submit", "--signals", "SPEED", "--window", "next:600s",
         "--vehicles", "car-1", "--deadline", "900", "--wait"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        started = proc.stdout.readline()
        assert started.startswith("assignment "), started
        number = started.split()[1]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert f"assignment {number} goes on" in err and f"oodida cancel {number}" in err
    assert "Traceback" not in err
    cancel = oodida(fleet, "cancel", number)
    assert cancel.returncode == 0, cancel.stderr
