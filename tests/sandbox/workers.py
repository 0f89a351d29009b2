"""Waiting for a sandbox worker to be inside a call, instead of sleeping and hoping it is."""

from __future__ import annotations

from oodida.sandbox.supervisor import Supervisor
from tests.helpers import cpu_seconds, eventually

BUSY_CPU = 0.1  # seconds of CPU: far more than receiving a request costs, so the module runs


async def worker_busy(supervisor: Supervisor, timeout: float = 30.0) -> int:
    """The worker's pid once it is spinning in a module that loops: up (a replacement may
    still be starting on a loaded machine) and BUSY_CPU seconds of CPU further on. A fixed
    sleep is a race on a loaded machine: the request may not have reached the worker yet."""
    pid: int = await eventually(lambda: supervisor.pid, timeout, what="a sandbox worker to be up")
    start = cpu_seconds(pid)
    await eventually(lambda: cpu_seconds(pid) - start >= BUSY_CPU, timeout,
                     what=f"worker {pid} to run the module's loop ({BUSY_CPU} s of CPU)")
    return pid
