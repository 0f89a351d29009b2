"""Run a Python snippet the way the units run the services, as far as a test can
without systemd as PID 1: as an unprivileged uid, with no_new_privs, an empty
capability bounding set (setpriv(1)), and the unit's own SystemCallFilter=,
RestrictNamespaces= and RestrictAddressFamilies= turned into seccomp filters
(libseccomp, as systemd does). Not emulated: the mount namespace settings
(ProtectSystem=, PrivateTmp=, ...), PrivateUsers=, the cgroup limits.

Usage: setpriv ... python confined.py UNIT_TEXT SNIPPET (the unit's text: its file may
be unreadable by the unprivileged uid)
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import subprocess
import sys
from functools import cache

import pyseccomp as sc

CLONE_FLAGS = {
    "cgroup": 0x02000000, "ipc": 0x08000000, "net": 0x40000000, "mnt": 0x00020000,
    "pid": 0x20000000, "user": 0x10000000, "uts": 0x04000000, "time": 0x00000080,
}


@cache
def expand(name: str) -> frozenset[str]:
    """A syscall group (@name) as systemd-analyze lists it, nested groups expanded."""
    if not name.startswith("@"):
        return frozenset([name])
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True)
    calls: set[str] = set()
    for line in out.stdout.splitlines()[1:]:
        line = line.strip()
        if line and not line.startswith("#"):
            calls |= expand(line)
    return frozenset(calls)


def unit_settings(unit: str) -> tuple[set[str], list[str], list[str]]:
    """(allowed syscalls, namespaces allowed, address families allowed) from the
    unit's SystemCallFilter= lines (an allow list, then `~` lines taking groups out),
    RestrictNamespaces= and RestrictAddressFamilies=."""
    allowed: set[str] = set()
    namespaces: list[str] = []
    families: list[str] = []
    for line in unit.splitlines():
        if m := re.match(r"SystemCallFilter=(~?)(.*)", line.strip()):
            names = set().union(*(expand(n) for n in m.group(2).split()))
            allowed = allowed - names if m.group(1) else allowed | names
        elif m := re.match(r"RestrictNamespaces=(.*)", line.strip()):
            namespaces = m.group(1).split()
        elif m := re.match(r"RestrictAddressFamilies=(.*)", line.strip()):
            families = m.group(1).split()
    return allowed, namespaces, families


def load_filters(unit: str) -> None:
    allowed, namespaces, families = unit_settings(unit)
    if families:  # socket(2) of any other family: EAFNOSUPPORT, as systemd does
        permitted = {int(getattr(socket, f)) for f in families}
        sockets = sc.SyscallFilter(defaction=sc.ALLOW)
        for family in range(64):
            if family not in permitted:
                sockets.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), "socket", sc.Arg(0, sc.EQ, family))
        sockets.load()
    forbidden = [flag for ns, flag in CLONE_FLAGS.items() if ns not in namespaces]
    spaces = sc.SyscallFilter(defaction=sc.ALLOW)
    for flag in forbidden:  # as systemd's RestrictNamespaces= filter: one rule per flag
        spaces.add_rule(sc.ERRNO(errno.EPERM), "unshare", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        spaces.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        spaces.add_rule(sc.ERRNO(errno.EPERM), "setns", sc.Arg(1, sc.MASKED_EQ, flag, flag))
    spaces.load()
    syscalls = sc.SyscallFilter(defaction=sc.ERRNO(errno.EPERM))  # SystemCallErrorNumber=EPERM
    for name in sorted(allowed):
        try:
            syscalls.add_rule(sc.ALLOW, name)
        except (OSError, ValueError, RuntimeError):
            pass  # not a system call on this architecture
    syscalls.load()  # last: it may forbid seccomp(2) itself


if __name__ == "__main__":
    unit, snippet = sys.argv[1], sys.argv[2]
    load_filters(unit)
    if not os.access(sys.executable, os.X_OK):
        # a test-host quirk: an interpreter under /root (pyenv, mode 0700) cannot be
        # exec'd by this uid; the worker then uses the system's, with the same path
        sys.executable = shutil.which("python3.11") or shutil.which("python3") or sys.executable
    exec(compile(snippet, "<snippet>", "exec"))  # noqa: S102 — the test's own snippet
