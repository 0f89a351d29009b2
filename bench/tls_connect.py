"""What TLS costs a server at connect time: plain TCP against TLS, same handshake, same run.

Run on demand, not as a test:

    .venv/bin/python bench/tls_connect.py [--vehicles 2000] [--workers 2]

The oodida server has no TLS listener yet (the security work adds it), so this
measures the part TLS changes, on the same asyncio stack: a handshake server process
that accepts vehicles exactly as `server.app.Server` does (a `wire.Connection`, the
vehicle's `Hello`, the token compared with `hmac.compare_digest`, a `Welcome`, then
it reads their status and holds the connection), once on plain TCP and once with
stdlib `ssl` and a self-made ECDSA P-256 certificate (made here with `cryptography`;
TLS 1.3, the default). The vehicles are bench/fleet_sim.py's (`--cafile` makes them
dial TLS and check the certificate).

A third run shrinks asyncio's per-connection TLS read buffer (256 KiB in Python 3.11,
allocated up front) to 32 KiB, to show where TLS's memory per connection goes.

Printed for each: vehicles connected, connect rate, server CPU per connection
(/proc/PID/stat) and server memory per held connection (VmRSS). Ratios TLS/plain.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hmac
import ipaddress
import json
import math
import os
import secrets
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from oodida.core.limits import raise_nofile_limit  # noqa: E402
from oodida.link import Channel, ChannelError  # noqa: E402
from oodida.testing import _die_with_parent, free_port  # noqa: E402
from oodida.wire import Connection, Side  # noqa: E402
from oodida.wire.messages import Hello  # noqa: E402


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oodida bench")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# --- the handshake server (a child process) ----------------------------------------------


async def serve(port: int, token: str, cert: str | None, key: str | None, ssl_buffer: int | None) -> None:
    raise_nofile_limit()
    if ssl_buffer:
        # asyncio (3.11) gives every TLS connection a 256 KiB read buffer, allocated
        # and zeroed up front: the class attribute is its size (TLS records are <= 16 KiB)
        from asyncio import sslproto

        sslproto.SSLProtocol.max_size = ssl_buffer
    context = None
    if cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
    held: set[asyncio.Task[Any]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.add(asyncio.current_task())  # type: ignore[arg-type]
        channel = Channel(reader, writer, Connection(Side.SERVER))
        try:
            hello = await asyncio.wait_for(channel.recv(), 30)
            assert isinstance(hello, Hello)
            if not hmac.compare_digest(hello.token.encode(), token.encode()):
                await channel.send_bytes(channel.conn.reject("bad credential"))
                return
            await channel.send_bytes(channel.conn.accept(hello, session=secrets.token_hex(8)))
            while True:
                await channel.recv()  # its status, then nothing until it goes
        except (TimeoutError, ChannelError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", port, ssl=context, backlog=4096)
    print("ready", flush=True)
    async with server:
        await asyncio.Event().wait()


# --- measuring ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


async def measure(
    vehicles: int, workers: int, cafile: Path | None, keyfile: Path | None, ssl_buffer: int | None = None
) -> dict[str, Any]:
    port, token = free_port(), secrets.token_hex(16)
    args = [sys.executable, str(Path(__file__)), "--serve", str(port)]
    if cafile is not None:
        args += ["--cert", str(cafile), "--key", str(keyfile)]
    if ssl_buffer:
        args += ["--ssl-buffer", str(ssl_buffer)]
    # started before the timing, with a preexec_fn asyncio's subprocesses do not take
    server = subprocess.Popen(args, stdout=subprocess.PIPE,  # noqa: ASYNC220 (see above)
                              env=dict(os.environ, TLS_BENCH_TOKEN=token), preexec_fn=_die_with_parent)
    sims: list[asyncio.subprocess.Process] = []
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise RuntimeError("handshake server did not start")
        await asyncio.sleep(0.3)
        cpu0, rss0 = cpu_seconds(server.pid), rss_mib(server.pid)
        per = math.ceil(vehicles / workers)
        started = time.monotonic()
        for first in range(1, vehicles + 1, per):
            sims.append(await asyncio.create_subprocess_exec(
                sys.executable, str(HERE / "fleet_sim.py"), "--port", str(port), "--first", str(first),
                "--count", str(min(per, vehicles + 1 - first)), *(["--cafile", str(cafile)] if cafile else []),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                env=dict(os.environ, FLEET_SIM_TOKEN=token), preexec_fn=_die_with_parent,  # noqa: PLW1509
            ))
        reports = []
        for sim in sims:
            assert sim.stdout is not None
            reports.append(json.loads(await asyncio.wait_for(sim.stdout.readline(), 600)))
        wall = time.monotonic() - started
        await asyncio.sleep(1.0)  # the statuses read
        connected = sum(r["connected"] for r in reports)
        return {
            "connected": connected, "seconds": max(r["seconds"] for r in reports), "wall": wall,
            "cpu_per_conn": (cpu_seconds(server.pid) - cpu0) / max(connected, 1),
            "kib_per_conn": (rss_mib(server.pid) - rss0) * 1024 / max(connected, 1),
            "handshake_p99": max(r["handshake_ms"]["p99"] for r in reports),
            "failed": {k: v for r in reports for k, v in r["failed_reasons"].items()},
        }
    finally:
        for sim in sims:
            if sim.returncode is None and sim.stdin is not None:
                sim.stdin.write(b"stop\n")
        for sim in sims:
            try:
                await asyncio.wait_for(sim.wait(), 30)
            except TimeoutError:
                sim.kill()
        server.terminate()
        server.wait(10)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vehicles", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="simulator processes")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--ssl-buffer", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        try:
            asyncio.run(serve(args.serve, os.environ["TLS_BENCH_TOKEN"], args.cert, args.key, args.ssl_buffer))
        except KeyboardInterrupt:
            pass
        return 0
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"TLS at connect time: {args.vehicles} vehicles in {args.workers} simulator processes, "
          f"{os.cpu_count()} cores, load average {load}; {ssl.OPENSSL_VERSION}")
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = make_certificate(Path(tmp))
        results = {}
        modes = (("plain TCP", None, None, None), ("TLS 1.3, ECDSA P-256", cert, key, None),
                 ("TLS, 32 KiB read buffer", cert, key, 32 * 1024))
        for label, cafile, keyfile, ssl_buffer in modes:
            r = asyncio.run(measure(args.vehicles, args.workers, cafile, keyfile, ssl_buffer))
            results[label] = r
            print(
                f"  {label:<22} connected {r['connected']}/{args.vehicles} in {r['seconds']:.2f} s "
                f"({r['connected'] / r['seconds']:.0f}/s, handshake p99 {r['handshake_p99']:.0f} ms); server CPU "
                f"{r['cpu_per_conn'] * 1e6:.0f} us per connection, {r['kib_per_conn']:.1f} KiB per held connection"
                + (f"; failed {r['failed']}" if r["failed"] else "")
            )
    plain, tls, small = results.values()
    print(
        f"  TLS / plain: connect time {tls['seconds'] / plain['seconds']:.1f}x, server CPU per connection "
        f"{tls['cpu_per_conn'] / plain['cpu_per_conn']:.1f}x, memory per connection "
        f"{tls['kib_per_conn'] / max(plain['kib_per_conn'], 0.1):.1f}x; with a 32 KiB read buffer "
        f"{small['kib_per_conn'] / max(plain['kib_per_conn'], 0.1):.1f}x"
    )
    return 0 if all(r["connected"] == args.vehicles for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
