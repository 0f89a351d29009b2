"""Inside user-mode Linux: load the CAN modules, create vcan0, run pytest, power off.

Started by the init script that `tests.uml.host` writes (after it mounted /proc,
/sys and a tmpfs). The guest has no kmod (Debian images often lack it, and it
would be the host's anyway), so modules are loaded with the finit_module system
call directly; they are the UML kernel's own, from its module tree.

Every step is written to `<exchange>/guest.json` as it finishes, so a failure
names the step that failed instead of leaving only a timeout behind.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# In dependency order: can-raw needs can, vcan needs can-dev.
MODULES = (
    "kernel/net/can/can.ko",
    "kernel/net/can/can-raw.ko",
    "kernel/drivers/net/can/dev/can-dev.ko",
    "kernel/drivers/net/can/vcan.ko",
)
_SYS_FINIT_MODULE = {"x86_64": 313}  # UML runs x86_64 user space; no other arch is packaged
_RB_POWER_OFF = 0x4321FEDC  # glibc's reboot(howto) adds the magic numbers itself

_libc = ctypes.CDLL(None, use_errno=True)


def load_module(path: Path) -> str:
    """Insert one kernel module; one already loaded is fine."""
    with open(path, "rb") as module:
        if _libc.syscall(_SYS_FINIT_MODULE[os.uname().machine], module.fileno(), b"", 0) == 0:
            return "loaded"
    error = ctypes.get_errno()
    if error == errno.EEXIST:
        return "already loaded"
    raise OSError(error, f"finit_module {path}: {os.strerror(error)}")


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:  # with ip's own words: "Operation not supported", ...
        raise OSError(f"ip {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")


def power_off() -> None:
    os.sync()
    _libc.reboot(_RB_POWER_OFF)  # returns only on failure; the init script then uses sysrq


def main(exchange: Path, module_tree: Path, pytest_args: list[str]) -> None:
    report: dict[str, object] = {"steps": []}
    steps: list[str] = report["steps"]  # type: ignore[assignment]

    def done(step: str) -> None:
        steps.append(step)
        (exchange / "guest.json").write_text(json.dumps(report))

    try:
        started = time.monotonic()
        for name in MODULES:
            done(f"{name}: {load_module(module_tree / name)}")
        ip("link", "set", "lo", "up")  # server and agent talk over loopback TCP
        ip("link", "add", "dev", "vcan0", "type", "vcan")
        ip("link", "set", "vcan0", "up")
        done("vcan0 and lo up")
        env = dict(os.environ, OODIDA_INSIDE_UML="1", PYTHONDONTWRITEBYTECODE="1", TMPDIR="/dev/shm")
        run = subprocess.run([sys.executable, "-m", "pytest", *pytest_args], env=env)
        report["pytest_exit"] = run.returncode
        report["seconds"] = round(time.monotonic() - started, 1)
        done("pytest ran")
    except BaseException as exc:  # noqa: BLE001 - whatever it was, the host must read it
        report["error"] = f"{type(exc).__name__}: {exc}"
        done("failed")
    finally:
        power_off()


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python -m tests.uml.guest EXCHANGE_DIR MODULE_TREE [PYTEST ARGS...]")
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
