"""What a handshake costs the server: CPU per connection, plain TCP against TLS.

A fleet of thousands reconnecting after a server restart pays this once per vehicle,
so it must be small: the challenge-response handshake does one indexed read and a
few HMACs on the server (no key stretching, see wire/scram.py), TLS adds an ECDHE
key exchange and an ECDSA P-256 signature per connection.

Starts `oodida server` as a process (LocalFleet's credentials and certificates, no
agents), dials it N times from this process (`link.connect`, the one client side of
the handshake everybody uses), `concurrency` at a time, and reads the server's CPU
time (utime + stime from /proc) before and after. Plain TCP on loopback is the
baseline measured in the same run; TLS is shown against it.

    .venv/bin/python bench/handshake.py [--connections 400] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oodida.link import connect  # noqa: E402
from oodida.link.credfile import load_client_credentials  # noqa: E402
from oodida.testing import LocalFleet  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


async def dial_many(fleet: LocalFleet, connections: int, concurrency: int) -> tuple[float, float, float]:
    """(server CPU seconds, client CPU seconds, wall seconds) for `connections` handshakes."""
    creds = load_client_credentials(fleet.analyst_credentials)
    context = creds.ssl_context()
    client = await fleet.client()  # waits until the server listens
    await client.close()
    assert fleet.server is not None
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            channel, _ = await connect("127.0.0.1", fleet.port, role=creds.role, identity=creds.identity,
                                       secret=creds.secret, ssl_context=context, timeout=60)
            await channel.close()

    await asyncio.sleep(0.5)  # let the server settle after its start
    before, started, ours = cpu_seconds(fleet.server.pid), time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(connections)))
    wall, client = time.perf_counter() - started, time.process_time() - ours
    await asyncio.sleep(0.2)  # the server finishes closing
    return cpu_seconds(fleet.server.pid) - before, client, wall


def measure(tls: bool, connections: int, concurrency: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="oodida-bench-handshake-") as workdir:
        fleet = LocalFleet(Path(workdir), vehicles=0, tls=tls, log_level="warning")
        with fleet:
            fleet.start_server()
            return asyncio.run(dial_many(fleet, connections, concurrency))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    n = args.connections
    print(f"{n} handshakes, {args.concurrency} at a time, analyst credential, loopback; server CPU from /proc")
    plain_cpu, plain_client, plain_wall = measure(False, n, args.concurrency)
    tls_cpu, tls_client, tls_wall = measure(True, n, args.concurrency)
    print(f"  plain TCP + challenge-response: {plain_cpu / n * 1e3:6.2f} ms server CPU per handshake, "
          f"{plain_client / n * 1e3:6.2f} ms client CPU, {n / plain_wall:6.0f} handshakes/s")
    print(f"  TLS + challenge-response:       {tls_cpu / n * 1e3:6.2f} ms server CPU per handshake, "
          f"{tls_client / n * 1e3:6.2f} ms client CPU, {n / tls_wall:6.0f} handshakes/s")
    print(f"  TLS / plain: {tls_cpu / plain_cpu:.1f}x server CPU" if plain_cpu else "  (plain too fast to measure)")
    print(f"  10,000 vehicles reconnecting: ~{tls_cpu / n * 10_000:.0f} s of server CPU over TLS, "
          f"~{plain_cpu / n * 10_000:.0f} s plain")


if __name__ == "__main__":
    main()
