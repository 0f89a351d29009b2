"""The SocketCAN suite (tests/socketcan), run for real: boot user-mode Linux, create
vcan0 in it, run the suite there, and require that every one of its tests ran and
passed. Where UML is not installed this skips, saying how to install it, and where
the host's CPU cannot run UML at all (see host.HOST_FAULTS) it skips saying so; with
OODIDA_REQUIRE_UML=1 (CI sets it once UML is installed and a probe guest booted) it
fails instead, so a broken install cannot turn into a quiet skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.uml import host

REPO = Path(__file__).resolve().parents[2]
SUITE = "tests/socketcan"
# Every test of the suite, so one that vanished (renamed, no longer collected) is noticed.
EXPECTED = {
    "tests.socketcan.test_vcan::test_a_replay_of_the_real_log_arrives_on_vcan0_frame_for_frame",
    "tests.socketcan.test_vcan::test_kernel_filters_from_the_dbc_drop_every_other_id",
    "tests.socketcan.test_agent_on_vcan::test_agent_on_socketcan_vcan0_answers_from_the_replayed_frames",
}
BOOT_TIMEOUT = 300.0  # seconds; boot and suite take 25 to 90 s, with the host's load


@pytest.mark.integration
@pytest.mark.uml
@pytest.mark.timeout(BOOT_TIMEOUT + 60)
def test_socketcan_suite_inside_uml(tmp_path: Path) -> None:
    uml = host.find_uml()
    if isinstance(uml, str):
        if os.environ.get("OODIDA_REQUIRE_UML") == "1":
            pytest.fail(f"OODIDA_REQUIRE_UML=1 but {uml}")
        pytest.skip(uml)
    guest = host.boot(uml, REPO, tmp_path, [SUITE, "-p", "no:cacheprovider", "--basetemp=/dev/shm/pytest",
                                            "--durations=0"],
                      timeout=BOOT_TIMEOUT)
    fault = host.host_fault(guest.console)
    if fault is not None and not guest.report:  # PID 1 died before the guest started: the host's doing
        if os.environ.get("OODIDA_REQUIRE_UML") == "1":
            pytest.fail(f"OODIDA_REQUIRE_UML=1 but {fault}")
        pytest.skip(fault)
    assert guest.returncode is not None, f"UML did not finish within {BOOT_TIMEOUT} s\n{guest.describe()}"
    assert "error" not in guest.report, guest.describe()
    assert guest.report.get("pytest_exit") == 0, guest.describe()
    junit = guest.junit()
    assert junit is not None, f"the guest wrote no JUnit report\n{guest.describe()}"
    assert junit.tests > 0 and (junit.failures, junit.errors, junit.skipped) == (0, 0, 0), (junit, guest.describe())
    assert set(junit.names) == EXPECTED, guest.describe()


def test_a_host_that_cannot_run_uml_is_named_from_its_console() -> None:
    console = "Run /tmp/x/init.sh as init process\nuserspace - ptrace set fp regs failed, errno = 14\nKernel panic"
    assert "cannot run user-mode Linux" in (host.host_fault(console) or "")
    assert host.host_fault("Run /tmp/x/init.sh as init process\nKernel panic - not syncing") is None


def test_without_uml_the_skip_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host.shutil, "which", lambda *args, **kwargs: None)
    assert host.find_uml() == "user-mode-linux not installed: apt-get install user-mode-linux"


def test_a_guest_run_that_skipped_or_ran_nothing_is_not_a_pass(tmp_path: Path) -> None:
    """The JUnit counts the UML test relies on, read from pytest's own report format."""
    (tmp_path / "junit.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="0" '
        'skipped="1" tests="2"><testcase classname="tests.socketcan.test_vcan" name="test_a"/>'
        '<testcase classname="tests.socketcan.test_vcan" name="test_b"><skipped message="no vcan0"/></testcase>'
        "</testsuite></testsuites>"
    )
    junit = host.GuestRun(returncode=0, seconds=1.0, exchange=tmp_path).junit()
    assert junit == host.Junit(
        tests=2, failures=0, errors=0, skipped=1,
        names=("tests.socketcan.test_vcan::test_a", "tests.socketcan.test_vcan::test_b"),
    )
    assert host.GuestRun(returncode=0, seconds=1.0, exchange=tmp_path / "empty").junit() is None
