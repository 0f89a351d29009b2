"""Fault injection: an assignment of 50 iterations over three agent processes and the
real server process, while a seeded random schedule SIGKILLs (and now and then
SIGTERMs) agents and the server at random moments, restarting them after a short
random pause, and a TCP proxy between the agents and the server resets connections.

At the end every (iteration, vehicle) result is stored exactly once, no agent
computed one twice (its SQLite outbox holds what it computed across its own death),
and every per-vehicle result and every fleet result equals those of the same
assignment run undisturbed on the same fleet just before.

Determinism, so the two runs can be compared value for value:
- every agent replays the drive once at full speed (speed 0, no loop) from its own
  offset, so what it records is the same in each of its lives;
- the window is `first` 1000 samples: the start of the recording, whenever the task
  arrives; a restarted agent waits until its replay has recorded them (a few hundred
  ms) before it answers, never answering from a half-filled buffer;
- the modules make each iteration depend on the one before: the fleet state carries
  the iteration counter `k` (which slice of the window the vehicles average) and a
  running value `acc`, so a lost, repeated or misnumbered iteration, or a state not
  resumed as it was, changes every later value;
- quorum is all vehicles and the deadline (60 s) is far longer than any restart, so
  every iteration waits for every vehicle rather than closing without one.

Faults come as fast as the fleet recovers from them: after each one the schedule
waits for an iteration to close, then strikes again after a random gap (0-0.6 s). So a
run takes a bounded time (about 50 iterations / a few per gap, each fault costing a
process start of a few seconds) and is hit all along, in every phase of an
iteration: while the task is out, the window being cut, results in flight, the
off-board step running, between two iterations.

The schedule is reproducible: the seed is printed, and OODIDA_FAULT_SEED=<seed>
replays the same choices (what is killed or cut, pauses, and gaps between faults);
the processes' own timing still varies from run to run.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import secrets
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from oodida.client.protocol import AnalystClient
from oodida.server.store import Store
from oodida.testing import LocalFleet
from oodida.wire.messages import (
    AssignmentSpec,
    IterationReport,
    ModuleSource,
    ResultsEnd,
    WindowSpec,
)
from tests.fleets import wait_sources
from tests.integration.proxy import CuttingProxy

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SEED_ENV = "OODIDA_FAULT_SEED"
ITERATIONS = 50
VEHICLES = 3
CHAOS_BUDGET = 120.0  # seconds the disturbed run may take before the test fails

ON_BOARD = ModuleSource(
    name="slices.py",
    source=(
        "def on_board(window, params, state):\n"
        "    v = window['SPEED'].v\n"
        "    k = 0 if state is None else state['k']\n"
        "    lo = (k * 37) % 900\n"
        "    total = 0.0\n"
        "    for x in v[lo:lo + 100]:\n"
        "        total += float(x)\n"
        "    return {'k': k, 'samples': len(v), 'mean': total / 100}\n"
    ),
)
OFF_BOARD = ModuleSource(
    name="chain.py",
    source=(
        "def off_board(results, params, state):\n"
        "    k = 0 if state is None else state['k']\n"
        "    acc = 0.0 if state is None else state['acc']\n"
        "    means = [results[name]['mean'] for name in sorted(results)]\n"
        "    return {'k': k + 1, 'acc': acc * 0.5 + sum(means) / len(means)}\n"
    ),
)
SPEC = AssignmentSpec(
    signals=["SPEED"],
    window=WindowSpec(amount=1000, unit="samples", kind="first"),
    iterations=ITERATIONS,
    deadline=60.0,
    on_board_module=ON_BOARD,
    off_board_module=OFF_BOARD,
)
COMPUTED = re.compile(r"assignment (\d+) iteration (\d+): (ok|error)")


class ProxiedFleet(LocalFleet):
    """The local fleet, but the agents reach the server through the proxy."""

    proxy_port: int = 0

    def write_agent_config(self, index: int, **source: Any) -> Path:
        port, self.port = self.port, self.proxy_port
        try:
            return super().write_agent_config(index, **source)
        finally:
            self.port = port


def progress(database: Path, assignment: int) -> tuple[str, int]:
    """(state, closed iterations) as the server's database says now."""
    db = sqlite3.connect(database, timeout=10)
    try:
        state, closed = db.execute(
            "SELECT state, (SELECT COUNT(*) FROM iterations WHERE assignment = ? AND status != 'open')"
            " FROM assignments WHERE id = ?",
            (assignment, assignment),
        ).fetchone()
        return state, closed
    finally:
        db.close()


async def all_reports(client: AnalystClient, assignment: int, follow: bool) -> tuple[list[IterationReport], ResultsEnd]:
    items = [item async for item in client.results(assignment, follow=follow)]
    *reports, end = items
    assert isinstance(end, ResultsEnd)
    return reports, end  # type: ignore[return-value]


class Chaos:
    """The seeded fault schedule, and what it did."""

    def __init__(self, fleet: ProxiedFleet, proxy: CuttingProxy, seed: int) -> None:
        self.fleet = fleet
        self.proxy = proxy
        self.rng = random.Random(seed)
        self.events: list[str] = []
        self.done: Counter[str] = Counter()
        self.started = time.monotonic()
        # each kind of fault early on, whatever the draw; then as the dice fall
        self.first = ["kill server", "stop server", "kill agent", "cut one"]
        self.rng.shuffle(self.first)

    def note(self, text: str, closed: int) -> None:
        line = f"{time.monotonic() - self.started:6.2f} s, {closed:2d} closed: {text}"
        self.events.append(line)
        print(line, flush=True)

    async def strike(self, closed: int) -> None:
        rng = self.rng
        if self.first:
            action = self.first.pop()
        else:
            action = rng.choices(
                ["kill agent", "stop agent", "kill server", "stop server", "cut one", "cut all"],
                weights=[4, 1, 2, 1, 3, 1],
            )[0]
        pause = rng.uniform(0.1, 1.0)
        # SIGKILL at any moment; SIGTERM: a clean stop, which must leave the work resumable too
        sig = signal.SIGKILL if action.startswith("kill") else signal.SIGTERM
        if action.endswith("agent"):
            index = rng.randrange(VEHICLES)
            vehicle = self.fleet.vehicle_ids[index]
            await self.end(self.fleet.agents[vehicle], sig)
            self.note(f"{sig.name} {vehicle}, back in {pause:.2f} s", closed)
            await asyncio.sleep(pause)
            self.fleet.start_agent(index)
        elif action.endswith("server"):
            assert self.fleet.server is not None
            await self.end(self.fleet.server, sig)
            self.note(f"{sig.name} server, back in {pause:.2f} s", closed)
            await asyncio.sleep(pause)
            self.fleet.start_server()
        elif action == "cut one":
            cut = self.proxy.cut(rng)
            self.note("reset one connection" if cut else "reset one connection: none was up", closed)
        else:
            self.note(f"reset all {self.proxy.cut_all()} connections", closed)
        self.done[action] += 1

    @staticmethod
    async def end(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        """Signal a process and wait for it to exit, the proxy forwarding meanwhile (an
        agent stopping cleanly waits for the server's acknowledgements through it)."""
        proc.send_signal(sig)
        await asyncio.to_thread(proc.wait, 60)

    def gap(self) -> float:
        """Seconds from an iteration closing after the last fault to the next fault:
        faults come as fast as the fleet recovers (every one is followed by progress,
        so the run ends), at moments the dice choose."""
        return self.rng.uniform(0.0, 0.6)


@pytest.mark.timeout(300)  # a calm run and a stormy one; the storm alone is bounded by CHAOS_BUDGET
async def test_results_survive_random_kills_and_cuts_exactly_once_and_equal_an_undisturbed_run(tmp_path):
    seed = int(os.environ.get(SEED_ENV) or secrets.randbits(32))
    print(f"fault schedule seed {seed}; reproduce with {SEED_ENV}={seed}", flush=True)
    fleet = ProxiedFleet(
        tmp_path, vehicles=VEHICLES, speed=0.0, loop=False, offsets=[0.0, 12.0, 24.0], signals=["SPEED"],
    )
    database = tmp_path / "server.sqlite3"

    with fleet:
        proxy = CuttingProxy(fleet.port)
        fleet.proxy_port = await proxy.start()
        try:
            fleet.start()
            client = await fleet.client(timeout=60)
            await fleet.wait_connected(client, timeout=90)
            await wait_sources(client, fleet, timeout=90)
            calm = (await client.submit(SPEC)).assignment
            reports, end = await all_reports(client, calm, follow=True)
            assert end.state == "done" and len(reports) == ITERATIONS
            await client.close()

            proxy.delay = 0.03  # latency, so the run lasts long enough to be hit
            client = await fleet.client()
            stormy = (await client.submit(SPEC)).assignment
            await client.close()
            chaos = Chaos(fleet, proxy, seed)
            struck_at = -1  # iterations closed when the last fault struck
            while True:
                state, closed = progress(database, stormy)
                if state != "running":
                    break
                assert time.monotonic() - chaos.started < CHAOS_BUDGET, (
                    f"seed {seed}: {closed} of {ITERATIONS} iterations closed after {CHAOS_BUDGET} s"
                    " of faults:\n" + "\n".join(chaos.events)
                )
                if closed <= struck_at:  # not one iteration since the last fault: let it recover
                    await asyncio.sleep(0.1)
                    continue
                await asyncio.sleep(chaos.gap())
                state, closed = progress(database, stormy)
                if state != "running":
                    break
                await chaos.strike(closed)
                struck_at = closed
            chaos.note(f"assignment {state}", closed)
        finally:
            await proxy.stop()

        client = await fleet.client(timeout=60)  # the server as the faults left it (restarted or not)
        try:
            stormy_reports, end = await all_reports(client, stormy, follow=False)
            calm_reports, _ = await all_reports(client, calm, follow=False)
        finally:
            await client.close()
    # every process is stopped now: the logs and the database are final

    faults = "\n".join(chaos.events)
    assert all(chaos.done[kind] >= 1 for kind in ("kill server", "stop server", "kill agent", "cut one")), faults
    assert end.state == "done", faults
    assert [r.iteration for r in stormy_reports] == list(range(1, ITERATIONS + 1)), faults
    assert all(r.status == "complete" for r in stormy_reports), [(r.iteration, r.reason) for r in stormy_reports]
    assert [r.fleet for r in stormy_reports] == [r.fleet for r in calm_reports], f"seed {seed}\n{faults}"

    store = Store(database)
    try:
        for number in range(1, ITERATIONS + 1):
            calm_results = {r.vehicle: r.value for r in store.results(calm, number)}
            stormy_results = {r.vehicle: r.value for r in store.results(stormy, number)}
            assert set(stormy_results) == set(fleet.vehicle_ids), f"iteration {number}; seed {seed}\n{faults}"
            assert stormy_results == calm_results, f"iteration {number}; seed {seed}\n{faults}"
            assert {v["k"] for v in stormy_results.values()} == {number - 1}
        (rows,) = store.db.execute("SELECT COUNT(*) FROM results WHERE assignment = ?", (stormy,)).fetchone()
        assert rows == ITERATIONS * VEHICLES
        resumed = [r for r in store.audit_log(stormy) if r.action == "resumed"]
        assert len(resumed) >= 1, faults  # the server was killed while the assignment ran
    finally:
        store.close()

    # what the agents computed, from their logs (every life of each, appended): each
    # (iteration, vehicle) at most once, and each one computed is stored (above: all are)
    computed: Counter[tuple[int, str]] = Counter()
    for vehicle in fleet.vehicle_ids:
        for match in COMPUTED.finditer((tmp_path / f"{vehicle}.log").read_text(errors="replace")):
            if int(match[1]) == stormy:
                assert match[3] == "ok", f"{vehicle} iteration {match[2]} failed; see {tmp_path / vehicle}.log"
                computed[(int(match[2]), vehicle)] += 1
    twice = sorted(key for key, n in computed.items() if n > 1)
    assert not twice, f"computed more than once: {twice}; seed {seed}\n{faults}"
    never_logged = ITERATIONS * VEHICLES - len(computed)
    print(f"{sum(chaos.done.values())} faults ({dict(chaos.done)}), {chaos.proxy.cuts} connections reset;"
          f" {len(computed)} results computed once each, {never_logged} committed without their log line")
    # only an agent killed between the outbox's commit and the log line leaves one out
    assert never_logged <= chaos.done["kill agent"], faults
