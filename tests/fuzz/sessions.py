"""The mutation fuzzer's loop: mutated recorded sessions against a real server.

Three kinds of attempt, in turn at random: the whole client side of a recorded session
mutated, handshake included, on a fresh connection (nobody authenticated); and the
post-handshake frames of a vehicle's or an analyst's session mutated, sent on a
connection that `authenticate` logged in. After each batch the `Watch` checks the
server. Used by the test (seconds) and by the campaign (minutes).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from oodida.link import ChannelError
from oodida.testing import LocalFleet
from oodida.wire.messages import Role
from tests.fuzz.harness import Watch, authenticate
from tests.fuzz.mutate import mutate
from tests.fuzz.record import load
from tests.fuzz.report import Tally

CONCURRENCY = 16


async def _drain(reader: asyncio.StreamReader, timeout: float) -> str:
    """Read what the server answers until it closes, at most `timeout` seconds."""
    got = 0
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                got += len(chunk)
        return "closed by server"
    except TimeoutError:
        return "still open"
    except OSError:
        return "reset"


async def _attempt(fleet: LocalFleet, rng: random.Random, corpus: dict[str, Any], n: int, tally: Tally) -> None:
    mode = rng.choice(["handshake", "vehicle", "analyst"])
    if mode == "handshake":
        payloads = rng.choice(corpus["whole"])
    else:
        payloads = rng.choice(corpus[mode] if rng.random() < 0.85 else corpus["any"])  # or the wrong role's
    name, data = mutate(rng, payloads, corpus["pool"])
    tally.add("inputs")
    tally.add(f"mode:{mode}")
    tally.add(f"mutator:{name}")
    tally.add("bytes", len(data))
    try:
        if mode == "handshake":
            reader, writer = await asyncio.open_connection("127.0.0.1", fleet.port)
        else:
            channel = await authenticate(fleet, Role(mode), f"fuzz-{mode[0]}{n % 64}")
            reader, writer = channel.reader, channel.writer
    except (OSError, ChannelError) as exc:
        tally.add("connect failed")
        tally.found(f"could not connect/authenticate for attempt {n}: {exc}")
        return
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()  # the server sees the end of the stream and ends the connection
        tally.add(await _drain(reader, 5.0))
    except OSError:
        tally.add("reset")
    finally:
        writer.close()


def corpus() -> dict[str, Any]:
    sessions = load()
    c2s = [[p for d, p in s["frames"] if d == "c2s"] for s in sessions]
    out: dict[str, Any] = {
        "whole": c2s,
        "vehicle": [f[1:] for s, f in zip(sessions, c2s, strict=True) if s["role"] == "vehicle"],
        "analyst": [f[1:] for s, f in zip(sessions, c2s, strict=True) if s["role"] == "analyst"],
        "any": [f[1:] for f in c2s],
        "pool": [p for s in sessions for _, p in s["frames"]],  # server's frames too: the wrong way round
    }
    return out


async def fuzz_sessions(fleet: LocalFleet, tally: Tally, seconds: float, seed: int) -> Watch:
    rng = random.Random(seed)
    data = corpus()
    watch = Watch(fleet)
    await watch.open()
    deadline = time.monotonic() + seconds
    numbers = iter(range(10**9))

    async def worker() -> None:  # CONCURRENCY of these keep attempts in flight
        while time.monotonic() < deadline and not tally.findings:
            await _attempt(fleet, rng, data, next(numbers), tally)

    async def checker() -> None:  # and the checks run once a second meanwhile
        while time.monotonic() < deadline and not tally.findings:
            await asyncio.sleep(1.0)
            tally.add("checks")
            for finding in await watch.check():
                tally.found(finding)

    try:
        await asyncio.gather(checker(), *(worker() for _ in range(CONCURRENCY)))
        for finding in await watch.check():  # and once after the last attempt
            tally.found(finding)
    finally:
        await watch.close()
    return watch
