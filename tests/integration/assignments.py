"""What the integration tests do with an assignment through a client: deploy a version,
wait for iterations, read the processes and sandbox workers the fleet reports. Shared
by test_replacement.py and test_signing.py (no test module imports another)."""

from __future__ import annotations

from oodida.wire.messages import (
    DeployEnd,
    Deploying,
    DeployProgress,
    IterationReport,
)
from tests.helpers import eventually


async def reports(client, assignment: int) -> list[IterationReport]:
    return [r async for r in client.results(assignment) if isinstance(r, IterationReport)]


async def wait_iterations(client, assignment: int, count: int, *, after: float = 0.0, timeout: float = 30.0):
    """Until `count` iterations that started after `after` (wall clock) have closed."""
    async def closed() -> list[IterationReport]:
        got = [r for r in await reports(client, assignment) if r.started > after]
        assert len(got) >= count, f"only {len(got)} of {count} iterations"  # shown if it lasts
        return got

    return await eventually(closed, timeout, what=f"{count} iterations of assignment {assignment} to close",
                            interval=0.1)


async def finish(client, assignment: int) -> list[IterationReport]:
    """Cancel and return every iteration but the one the cancel cut short."""
    await client.cancel(assignment)
    got = [r async for r in client.results(assignment, follow=True) if isinstance(r, IterationReport)]
    assert got[-1].status == "cancelled"
    return got[:-1]


async def deploy(client, **fields) -> tuple[list, DeployEnd]:
    """[Deploying, each vehicle's answer (DeployAnswer)..., DeployEnd]"""
    events = [e async for e in client.deploy(**fields)]
    assert isinstance(events[0], Deploying) and isinstance(events[-1], DeployEnd)
    assert all(isinstance(e, DeployProgress) for e in events[1:-1])
    answers = [a for e in events[1:-1] for a in e.answers]
    return [events[0], *answers, events[-1]], events[-1]


async def processes(client) -> dict[str, tuple]:
    """Every process that could have been restarted: agents, their workers, the server and its worker."""
    status = await client.status()

    def worker(info):
        return None if info is None else (info.pid, info.started, info.restarts)

    out = {"server": (status.pid, worker(status.sandbox))}
    for v in status.vehicles:
        out[v.vehicle] = (v.status.pid, worker(v.status.sandbox))
    return out
