"""TLS contexts for both ends, and the one rule about plain TCP.

Every connection is TLS (1.2 at least, 1.3 preferred by OpenSSL's negotiation), with
the server's certificate checked against a CA and its host name on every client.
Plain TCP exists for tests and a developer's laptop: only when asked for explicitly,
and only to or on a loopback address, where nobody else is on the wire. The rule is
here, once, so the server, the agent and the CLI apply the same one.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import Any

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the name localhost (never resolved: a name in
    /etc/hosts can point anywhere, `localhost` by convention cannot)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plain_problem(host: str) -> str | None:
    """Why plain TCP may not be used with `host`, or None when it may."""
    if is_loopback(host):
        return None
    return (
        f"plain TCP is only allowed on a loopback address (127.0.0.1, ::1, localhost), not {host!r}: "
        "configure TLS instead"
    )


def client_context(
    *, ca: str | None = None, cadata: str | None = None, cert: str | None = None, key: str | None = None
) -> ssl.SSLContext:
    """A client's context: the server's certificate must chain to `ca` (a file) or
    `cadata` (PEM text), else to the system's CAs, and name the host we dial.
    `cert`/`key`: our own certificate, for servers that ask vehicles for one."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca, cadata=cadata)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def server_context(*, cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """The server's context. With `client_ca`, a client *may* present a certificate
    (one port serves vehicles and analysts; the handshake then decides whether this
    peer needed one); a certificate that does not chain to `client_ca` fails TLS."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    # No TLS 1.3 session tickets: asyncio's client cannot resume a session, so each
    # ticket would be minted, encrypted and sent for nothing (about 9% of the
    # server's OpenSSL time per handshake, measured with memory BIOs).
    context.num_tickets = 0
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def certificate_names(peercert: dict[str, Any] | None) -> set[str]:
    """The names a verified peer certificate is for: its subject CN and DNS SANs."""
    if not peercert:
        return set()
    names = {value for rdn in peercert.get("subject", ()) for key, value in rdn if key == "commonName"}
    names.update(value for kind, value in peercert.get("subjectAltName", ()) if kind == "DNS")
    return names


TLS_READ_BUFFER = 32 * 1024  # two TLS records; Channel asks for up to 64 KiB, it gets what is there


def limit_tls_read_buffers(size: int = TLS_READ_BUFFER) -> None:
    """Give every TLS connection of this process a read buffer of `size` bytes.

    asyncio 3.11 allocates 256 KiB per TLS connection up front
    (`asyncio.sslproto.SSLProtocol.max_size`): 10,000 vehicles would hold about 3 GiB
    in buffers alone (bench/tls_connect.py: 290 KiB per held connection against 61 KiB
    with 32 KiB). A server calls this once before it listens; `Channel` never reads
    more than 64 KiB at a time anyway. The attribute is asyncio's, not public API, so
    an interpreter without it is left as it is."""
    from asyncio import sslproto

    if isinstance(getattr(sslproto.SSLProtocol, "max_size", None), int):
        sslproto.SSLProtocol.max_size = size
