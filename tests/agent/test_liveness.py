"""What the agent's watchdog counts as alive (agent.main._alive)."""

from __future__ import annotations

import asyncio

import pytest

from oodida.agent.main import _alive


@pytest.mark.timeout(5)
async def test_alive_while_the_uplink_runs_and_not_once_it_died():
    async def broken() -> None:
        raise RuntimeError("bug")

    running = asyncio.create_task(asyncio.sleep(10))
    dead = asyncio.create_task(broken())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    verdicts = _alive(running), _alive(dead)
    running.cancel()
    alive, dead = verdicts
    assert alive is None
    assert dead == "the uplink task ended (RuntimeError('bug'))"
