"""Helpers the tests share (a module, not conftest.py, so tests import it like any other):
the recorded drive's paths, `run` for synchronous tests that drive processes, /proc
reads, and waiting for a condition instead of sleeping and hoping.

A test that sleeps a fixed time before asserting races the code under test (on a loaded
machine the condition comes later); a hand-made polling loop repeats the deadline
arithmetic and, when it runs out, fails with a bare `assert False`. `eventually` waits
for the real condition and, when it does not come, names what it waited for and what it
saw last.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
DATA = Path(__file__).resolve().parents[1] / "data"
LOG = DATA / "rav4-2017-comma2k19.log"  # the recorded drive (comma2k19, a 2017 RAV4)
DBC = DATA / "toyota_rav4_2017.dbc"


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Run a coroutine to completion with a hard timeout, from a synchronous test or
    fixture (one driving processes); an `async def test_...` awaits instead."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


Check = Callable[[], "T | Awaitable[T]"]


def _describe(what: str | None, check: object) -> str:
    return what or getattr(check, "__name__", repr(check))


async def eventually(check: Check[T], timeout: float = 10.0, what: str | None = None, interval: float = 0.02) -> T:
    """Wait until `check()` (a plain or async callable) returns a truthy value, and return it.

    An exception raised by `check` counts as "not yet" (a file not written yet, a port not
    open yet) and is shown in the failure if the deadline passes with it.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            last = value
        except Exception as exc:  # "not yet"; reported if it lasts
            value, last = None, exc  # type: ignore[assignment]
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:g} s for {_describe(what, check)}; last saw {last!r}")
        await asyncio.sleep(interval)


def eventually_blocking(check: Callable[[], T], timeout: float = 10.0, what: str | None = None,
                        interval: float = 0.05) -> T:
    """`eventually` for synchronous tests (those driving processes, not a loop of their own)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
            last = value
        except Exception as exc:  # "not yet"; reported if it lasts
            value, last = None, exc  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:g} s for {_describe(what, check)}; last saw {last!r}")
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process, from /proc (raises once it is gone)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def proc_exists(pid: int) -> bool:
    """Whether /proc has this process (a zombie still counts: it is not reaped yet)."""
    return Path(f"/proc/{pid}").exists()


def proc_read(pid: int, name: str) -> str:
    """The text of /proc/PID/NAME (stat, status, ...): a read that does not block."""
    return Path(f"/proc/{pid}/{name}").read_text()


def proc_read_bytes(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line mentions `text` (the demo's work dir is in every child's)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and int(proc.name) != os.getpid():
            found.append(int(proc.name))
    return found
