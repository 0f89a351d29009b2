"""The sd_notify client against a real AF_UNIX datagram socket (what systemd listens on)."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time

import pytest

from oodida.core.service import Notifier


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(5)
    yield str(path), sock
    sock.close()


async def test_silent_without_systemd():
    n = Notifier({})
    assert not n.enabled and n.watchdog_period is None
    assert n.ready("up") is False and n.ping() is False and n.stopping() is False
    await asyncio.wait_for(n.watchdog(), 1)  # returns at once: no watchdog configured


def test_ready_status_stopping_are_datagrams(notify_socket):
    path, sock = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.ready("listening\non 1")
    assert sock.recv(4096) == b"READY=1\nSTATUS=listening on 1"
    assert n.status("a") and sock.recv(4096) == b"STATUS=a"
    n.status("a")  # unchanged: not sent again
    n.status("b")
    assert sock.recv(4096) == b"STATUS=b"
    assert n.stopping() and sock.recv(4096) == b"STOPPING=1"


def test_abstract_socket_name():
    name = f"oodida-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1"


def test_a_vanished_socket_is_logged_not_raised(tmp_path, caplog):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert n.ready() is False and n.ping() is False
    assert sum("cannot notify systemd" in r.message for r in caplog.records) == 1


def test_watchdog_pid_of_another_process_disables_it(notify_socket):
    path, _ = notify_socket
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}).watchdog_period is None
    mine = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_period == 0.2
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "0"}).watchdog_period is None


@pytest.mark.timeout(10)
async def test_watchdog_pings_at_half_the_period_and_only_while_healthy(notify_socket):
    path, sock = notify_socket
    sock.setblocking(False)
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})  # 0.2 s: a ping every 0.1 s
    healthy = True

    loop = asyncio.get_running_loop()
    job = asyncio.create_task(n.watchdog(lambda: None if healthy else "broken"))

    async def pings(seconds: float) -> list[float]:
        got, end = [], loop.time() + seconds
        while loop.time() < end:
            try:
                assert sock.recv(4096) == b"WATCHDOG=1"
                got.append(loop.time())
            except BlockingIOError:
                await asyncio.sleep(0.01)
        return got

    first = await pings(1.0)
    healthy = False
    await asyncio.sleep(0.15)
    while True:  # drain what was sent before the check failed
        try:
            sock.recv(4096)
        except BlockingIOError:
            break
    sick = await pings(0.5)
    job.cancel()
    assert 8 <= len(first) <= 12  # every 0.1 s
    gaps = [b - a for a, b in itertools.pairwise(first)]
    assert all(0.07 < g < 0.2 for g in gaps), gaps
    assert sick == []


@pytest.mark.timeout(5)
async def test_a_wedged_loop_sends_no_ping(notify_socket):
    path, sock = notify_socket
    sock.setblocking(False)
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})

    job = asyncio.create_task(n.watchdog())
    await asyncio.sleep(0.01)  # the first ping
    time.sleep(0.5)  # noqa: ASYNC251 — on purpose: a blocking call on the loop: five periods without a ping
    count = 0
    while True:
        try:
            sock.recv(4096)
            count += 1
        except BlockingIOError:
            break
    job.cancel()
    assert count == 1


def test_a_reader_that_does_not_keep_up_costs_messages_never_a_blocked_loop(notify_socket, caplog):
    """A datagram socket queues only net.unix.max_dgram_qlen messages; past that a
    blocking send would wedge the event loop (and with it the watchdog). Found when a
    test stopped reading and the agent hung on SIGTERM."""
    path, sock = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    started = time.monotonic()
    sent = [n.ping() for _ in range(1000)]
    assert time.monotonic() - started < 2.0
    assert sent[0] and not sent[-1]  # the first ones queued, then dropped, without waiting
    assert sum("is full" in r.getMessage() for r in caplog.records) == 1  # said once
    sock.setblocking(False)
    while True:  # the reader catches up: sends go through again
        try:
            sock.recv(4096)
        except BlockingIOError:
            break
    sock.settimeout(5)
    assert n.ping() and sock.recv(4096) == b"WATCHDOG=1"
