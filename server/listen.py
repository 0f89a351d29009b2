"""Why the server cannot listen where its configuration says, in one sentence.

`asyncio.start_server` raises a bare OSError ("[Errno 98] error while attempting to
bind on address ...") under 35 lines of traceback. The operator needs the address,
the reason, and for a port in use, who holds it: Linux says so in /proc (the socket's
inode in /proc/net/tcp*, that inode among a process's descriptors in /proc/PID/fd),
readable for the operator's own processes (all of them as root).
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from oodida.core.errors import OodidaError


class ListenError(OodidaError):
    """The server cannot listen on its configured address; a restart will not help
    until the configuration or the other listener changes."""


_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


def listen_problem(host: str, port: int, exc: OSError) -> str:
    where = f"{host}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"[listen] host {host!r} cannot be resolved: {exc.strerror or exc}"
    if exc.errno == errno.EADDRINUSE:
        holder = port_holder(port)
        by = f" (by pid {holder[0]}, {holder[1]})" if holder else ""
        return f"{where} is in use{by}: stop that process, or choose another [listen] port in server.toml"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: {host} is not an address of this machine ([listen] host in server.toml)"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def port_holder(port: int) -> tuple[int, str] | None:
    """(pid, command name) of a process with a TCP socket listening on `port`, where
    /proc lets us see it; else None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    return int(proc.name), _command(proc)
            except OSError:
                continue
    return None


def _command(proc: Path) -> str:
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
        text = " ".join(a.decode(errors="replace") for a in argv if a)
    except OSError:
        text = ""
    if not text:
        try:
            text = (proc / "comm").read_text().strip()
        except OSError:
            text = "?"
    return text if len(text) <= 120 else text[:117] + "..."
