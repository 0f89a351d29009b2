"""TCP keepalive on a connection, so a peer that vanished without a word is noticed.

A vehicle that loses power or coverage sends no FIN and no reset: without keepalive
its connection looks open for ever (hours, by the kernel's default of 2 h idle before
the first probe), the server keeps its session, and each iteration waits for it until
the deadline. With it, the kernel probes after `idle` seconds of silence and gives up
after four unanswered probes a quarter of `idle` apart: the read fails, the session
ends, as for any other lost peer.
"""

from __future__ import annotations

import asyncio
import socket

PROBES = 4


def enable_keepalive(writer: asyncio.StreamWriter, idle: float) -> bool:
    """Turn keepalive on for the stream's socket; False where the platform cannot."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; elsewhere the system's defaults apply
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(idle)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, int(idle / PROBES)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, PROBES)
    except OSError:
        return False
    return True
