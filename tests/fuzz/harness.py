"""A real server process under attack, and what is checked during and after.

The server is `oodida server` in its own process (through `LocalFleet`), on loopback.
After each round of hostile input the harness checks what must hold: the process is
alive, its resident memory is within a bound, an honest analyst's status request is
answered within a bound, and the server's log holds no traceback (the server logs one
when a connection's handler fails with an exception nobody expected).

`authenticate` is the one place that knows how to connect and log in; when the
handshake changes (TLS, challenge-response), only it changes.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from oodida.link import Channel, connect
from oodida.testing import LocalFleet
from oodida.wire.messages import Role
from tests.helpers import proc_read

LIMITS_FOR_TESTS = {
    # short enough that a test sees them act, long enough for a loaded machine
    "handshake_timeout": 3.0,
    "limits.send_timeout": 2.0,
}


FUZZ_SECRET = "a-secret-for-the-fuzzers-own-identities"
_granted: dict[tuple[str, str], Role] = {}  # (server database, identity) -> role


def grant(fleet: LocalFleet, role: Role, identity: str) -> None:
    """A credential for `identity` in the server's database, made on first use (the
    server reads credentials at each handshake, so no restart is needed)."""
    from oodida.server.credentials import (
        Credentials,  # the test harness, not the protocol, provisions
    )

    database = str(Path(fleet.workdir) / "server.sqlite3")
    if _granted.get((database, identity)) is role:
        return
    credentials = Credentials(database)
    try:
        credentials.add(identity, role, secret=FUZZ_SECRET, replace=True)
    finally:
        credentials.close()
    _granted[(database, identity)] = role


async def authenticate(fleet: LocalFleet, role: Role, identity: str, timeout: float = 20.0) -> Channel:
    """A channel past the handshake (challenge-response, plain TCP on loopback), as
    `identity` in `role`."""
    grant(fleet, role, identity)
    channel, _ = await connect(
        "127.0.0.1", fleet.port, role=role, identity=identity, secret=FUZZ_SECRET, timeout=timeout
    )
    return channel


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc (VmRSS, in KiB)."""
    for line in proc_read(pid, "status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def fleet_options(vehicles: int = 0, **options: Any) -> dict[str, Any]:
    """LocalFleet's options for a fuzzed server (and `vehicles` real agents) with the test limits."""
    # plain TCP on loopback: the fuzzers aim at our protocol layer with raw bytes; TLS
    # beneath it is OpenSSL's (and tests/integration/test_security.py tests ours of it)
    return {"vehicles": vehicles, "signals": ["SPEED"], "tls": False,
            "server_options": {**LIMITS_FOR_TESTS, **options}}


def start_accepting(fleet: LocalFleet) -> None:
    """Start the fleet; return once the server accepts connections."""
    fleet.start()

    async def accepting() -> None:
        client = await fleet.client()
        await client.close()

    asyncio.run(asyncio.wait_for(accepting(), 60))


def start_server(workdir: Path, vehicles: int = 0, **options: Any) -> LocalFleet:
    """A server process (and `vehicles` real agents) with the test limits; returns once
    the server accepts connections. Stop it with `fleet.stop()`."""
    fleet = LocalFleet(workdir, **fleet_options(vehicles, **options))
    try:
        start_accepting(fleet)
    except BaseException:
        fleet.stop()
        raise
    return fleet


class Watch:
    """The checks after each round. Findings are strings (the tally fails the test)."""

    def __init__(self, fleet: LocalFleet, status_bound: float = 10.0) -> None:
        assert fleet.server is not None
        self.fleet = fleet
        self.pid = fleet.server.pid
        self.status_bound = status_bound
        self.client: Any = None
        self.baseline_kib = 0
        self.peak_kib = 0
        self.slowest_status = 0.0
        self._log_seen = 0

    async def open(self) -> None:
        self.client = await self.fleet.client()
        await self.client.status()
        self.baseline_kib = self.peak_kib = rss_kib(self.pid)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    async def check(self) -> list[str]:
        findings: list[str] = []
        if self.fleet.server is None or self.fleet.server.poll() is not None:
            return [f"server process exited ({self.fleet.server and self.fleet.server.returncode})"]
        kib = rss_kib(self.pid)
        self.peak_kib = max(self.peak_kib, kib)
        started = time.monotonic()
        try:
            await asyncio.wait_for(self.client.status(), self.status_bound)
        except TimeoutError:
            findings.append(f"an honest status request took over {self.status_bound} s")
        except Exception as exc:  # noqa: BLE001 -- the honest analyst's connection broke: a finding
            findings.append(f"honest analyst connection failed: {type(exc).__name__}: {exc}")
            self.client = await self.fleet.client()
        self.slowest_status = max(self.slowest_status, time.monotonic() - started)
        findings += self.log_problems()
        return findings

    def log_problems(self) -> list[str]:
        """Tracebacks the server logged since the last look (one finding each)."""
        lines = (self.fleet.workdir / "server.log").read_text(errors="replace").splitlines()
        new, self._log_seen = lines[self._log_seen :], len(lines)
        found = []
        for i, line in enumerate(new):
            if line.startswith("Traceback"):
                # the exception is the first unindented line after the traceback's frames
                last = next((x for x in new[i + 1 :] if x and not x.startswith(" ")), "?")
                where = [x.strip() for x in new[i + 1 :] if x.startswith('  File "')][-1:]
                found.append(f"server logged: {new[i - 1] if i else ''} / {last} at {where}"[:800])
        return found

    def figures(self) -> dict[str, Any]:
        return {
            "rss_baseline_mib": round(self.baseline_kib / 1024, 1),
            "rss_peak_mib": round(self.peak_kib / 1024, 1),
            "slowest_status_s": round(self.slowest_status, 3),
        }
