"""On the host: find Debian's user-mode Linux, boot it with the host as its root
filesystem, run pytest inside (see `guest`), and read back what happened.

Why UML: SocketCAN needs kernel support that this machine's kernel (and CI's) lacks,
and a container cannot load modules. UML is a Linux kernel run as an ordinary
process; Debian's `user-mode-linux` package ships it with the CAN modules, and it
boots in about two seconds. Its root filesystem is the host's own (hostfs), so the
guest runs this worktree with this virtual environment, no image to build.

Nothing here passes by default: `GuestRun` only reports; the caller asserts.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

MODULE_ROOT = Path("/usr/lib/uml/modules")
VCAN = "kernel/drivers/net/can/vcan.ko"
INSTALL_HINT = "apt-get install user-mode-linux"
GUEST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # the guest's PATH: where it looks for `ip`


@dataclass(frozen=True)
class Uml:
    kernel: Path
    modules: Path  # the module tree of that kernel's version


@dataclass(frozen=True)
class Junit:
    tests: int
    failures: int
    errors: int
    skipped: int
    names: tuple[str, ...]  # "file::test" of every test case


@dataclass
class GuestRun:
    returncode: int | None  # of the UML process; None when it was killed at the timeout
    seconds: float
    exchange: Path
    report: dict = field(default_factory=dict)  # guest.json: steps done, pytest's exit code, error

    @property
    def console(self) -> str:
        return _read(self.exchange / "console.log")

    @property
    def output(self) -> str:
        """What the guest (and pytest inside it) printed."""
        return _read(self.exchange / "guest.log")

    def junit(self) -> Junit | None:
        path = self.exchange / "junit.xml"
        if not path.exists():
            return None
        root = ElementTree.parse(path).getroot()
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        names = tuple(
            f"{case.get('classname', '')}::{case.get('name', '')}"
            for suite in suites for case in suite.iter("testcase")
        )
        return Junit(
            tests=sum(int(s.get("tests", 0)) for s in suites),
            failures=sum(int(s.get("failures", 0)) for s in suites),
            errors=sum(int(s.get("errors", 0)) for s in suites),
            skipped=sum(int(s.get("skipped", 0)) for s in suites),
            names=names,
        )

    def describe(self, lines: int = 40) -> str:
        """The end of the guest's output and of the kernel's console, for failure messages."""
        output = "\n".join(self.output.splitlines()[-lines:])
        console = "\n".join(self.console.splitlines()[-lines // 2 :])
        return (
            f"UML exit {self.returncode} after {self.seconds:.1f} s; guest report {self.report}\n"
            f"--- guest output (tail) ---\n{output}\n--- kernel console (tail) ---\n{console}"
        )


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def find_uml() -> Uml | str:
    """The UML kernel and its module tree, or why they cannot be used (a skip reason)."""
    kernel = shutil.which("linux.uml") or shutil.which("linux", path="/usr/bin")
    if kernel is None:
        return f"user-mode-linux not installed: {INSTALL_HINT}"
    trees = sorted(path.parents[len(Path(VCAN).parts) - 1] for path in MODULE_ROOT.glob(f"*/{VCAN}"))
    if not trees:
        return f"user-mode-linux has no vcan module under {MODULE_ROOT}: {INSTALL_HINT}"
    if shutil.which("ip", path=GUEST_PATH) is None:
        return "iproute2 not installed (the guest creates vcan0 with `ip`): apt-get install iproute2"
    try:  # prints its version, e.g. "6.1.176"; pick the module tree of that version
        version = subprocess.run([kernel, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run {kernel}: {exc}"
    matching = [tree for tree in trees if tree.name == version]
    return Uml(Path(kernel), matching[0] if matching else trees[-1])


def write_init(exchange: Path, repo: Path, modules: Path, pytest_args: list[str]) -> Path:
    """PID 1 of the guest: mount what Python needs, run the guest, power off.

    /dev/shm is a tmpfs of the guest's own: pytest's temporary files and the
    sandbox's shared memory stay inside UML, off the host's disk."""
    q = shlex.quote
    guest = [sys.executable, "-m", "tests.uml.guest", str(exchange), str(modules), *pytest_args]
    init = exchange / "init.sh"
    init.write_text(
        "#!/bin/sh\n"
        "# PID 1 inside user-mode Linux, written by tests/uml/host.py\n"
        f"export PATH={GUEST_PATH} HOME=/root LANG=C.UTF-8\n"
        "mount -t proc proc /proc\n"
        "mount -t sysfs sysfs /sys\n"
        "mkdir -p /dev/shm && mount -t tmpfs -o size=256m tmpfs /dev/shm\n"
        f"cd {q(str(repo))}\n"
        f"{' '.join(q(a) for a in guest)} > {q(str(exchange / 'guest.log'))} 2>&1\n"
        "# the guest powers off itself; this is for when it could not\n"
        "echo o > /proc/sysrq-trigger\n"
        "sleep 30\n"
    )
    init.chmod(0o755)
    return init


def boot(
    uml: Uml, repo: Path, exchange: Path, pytest_args: list[str], *, timeout: float = 300.0, memory_mb: int = 768
) -> GuestRun:
    """Boot UML, run `pytest pytest_args` inside it from `repo`, and wait (bounded).

    The guest writes its JUnit report and step log into `exchange` (a host
    directory, reached through hostfs). UML's processes are host processes in
    their own session: at the timeout the whole session is killed."""
    exchange.mkdir(parents=True, exist_ok=True)
    init = write_init(exchange, repo, uml.modules, [*pytest_args, f"--junitxml={exchange / 'junit.xml'}"])
    return _run(uml, init, exchange, timeout=timeout, memory_mb=memory_mb)


def _run(uml: Uml, init: Path, exchange: Path, *, timeout: float, memory_mb: int) -> GuestRun:
    """Boot UML with `init` as PID 1; its console goes to exchange/console.log."""
    command = [
        str(uml.kernel),
        f"mem={memory_mb}M",
        "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "rw",
        f"init={init}",
        f"uml_dir={exchange}",  # its pid and mconsole files, instead of ~/.uml
        "con=null", "con0=null,fd:1",  # the kernel's console to console.log, no terminal
    ]
    started = time.monotonic()
    with open(exchange / "console.log", "wb") as console:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            returncode: int | None = process.wait(timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # its helper processes too, whatever happened
            except ProcessLookupError:
                pass
            process.wait()
    seconds = time.monotonic() - started
    report_path = exchange / "guest.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return GuestRun(returncode=returncode, seconds=seconds, exchange=exchange, report=report)


# What a host that cannot run this UML at all prints before PID 1 dies: the kernel
# cannot restore a process's FPU state through ptrace, because the host CPU's XSAVE
# area (AMX's tiles, on recent Xeons) is larger than UML 6.1 allows for. No guest
# can run there; it is the host's, not the suite's.
HOST_FAULTS = {
    "ptrace set fp regs failed": (
        "this host's CPU cannot run user-mode Linux 6.1 (\"ptrace set fp regs failed\": its FPU state, "
        "e.g. AMX's, is larger than UML 6.1 handles); the SocketCAN suite needs a host without AMX or a newer UML"
    ),
}


def host_fault(console: str) -> str | None:
    """Why no UML guest can run on this host at all, from its console; None if the
    console shows no such fault (then a failure is the guest's, and counts)."""
    return next((why for mark, why in HOST_FAULTS.items() if mark in console), None)


def probe(exchange: Path, timeout: float = 60.0) -> str | None:
    """Boot a guest that only says so and powers off: None if it booted, else why not.
    `.ci/run` asks this before it makes a guest that cannot boot a failure."""
    uml = find_uml()
    if isinstance(uml, str):
        return uml
    exchange.mkdir(parents=True, exist_ok=True)
    init = exchange / "probe.sh"
    init.write_text("#!/bin/sh\necho oodida-uml-booted\necho o > /proc/sysrq-trigger\nsleep 10\n")
    init.chmod(0o755)
    guest = _run(uml, init, exchange, timeout=timeout, memory_mb=128)
    console = guest.console
    if "oodida-uml-booted" in console:
        return None
    return host_fault(console) or f"a UML guest did not boot (exit {guest.returncode}): {console[-400:]!r}"


if __name__ == "__main__":  # python3 -m tests.uml.host --probe (stdlib only: before any venv)
    import tempfile

    if sys.argv[1:] != ["--probe"]:
        sys.exit("usage: python3 -m tests.uml.host --probe")
    with tempfile.TemporaryDirectory(prefix="oodida-uml-probe-") as tmp:
        problem = probe(Path(tmp))
    print(problem or "user-mode Linux boots here")
    sys.exit(1 if problem else 0)
