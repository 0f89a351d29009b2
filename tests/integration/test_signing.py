"""Signed modules with real processes on loopback: a server and three agents that
require modules signed by the analyst's key (`[signing] require = true`), keys made
with `oodida keygen`, modules sent with `oodida submit --sign` and `oodida deploy
--sign`.

A signed submit and a signed deploy run. An unsigned deploy, one signed by a key the
vehicles do not trust, and a compromised server (the module's source altered in the
server's own database, then sent again under the analyst's valid old signature by a
rollback) are refused by every agent, with the reason, and the analyst sees each
refusal; the agents keep running the signed version and keep answering. A vehicle
that restarts gets the signed version again from the server and runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oodida.core.signing import load_signing_key
from oodida.sandbox.supervisor import source_hash
from oodida.testing import REPO, LocalFleet
from oodida.wire.messages import AssignmentSpec, ModuleSource, WindowSpec
from tests.fleets import FleetSpec
from tests.integration.assignments import deploy, finish, processes, wait_iterations

pytestmark = pytest.mark.integration


def on_board(version: int) -> str:
    return (
        "def on_board(window, params, state):\n"
        "    speed = window['SPEED']\n"
        f"    return {{'version': {version}, 'samples': len(speed.v)}}\n"
    )


EVIL = "def on_board(window, params, state):\n    return {'version': 666, 'samples': 0}\n"
H1, H2, H3 = (source_hash(on_board(v)) for v in (1, 2, 3))


class SigningFleet(LocalFleet):
    """A local fleet whose agents run only modules signed by the keys in `trusted`."""

    trusted: tuple[str, ...] = ()

    def write_agent_config(self, index: int, **source) -> Path:
        path = super().write_agent_config(index, **source)
        keys = ", ".join(f'"{k}"' for k in self.trusted)
        with path.open("a") as f:
            f.write(f"\n[signing]\nrequire = true\ntrusted_keys = [{keys}]\n")
        return path


def oodida(fleet: LocalFleet, *args: str) -> subprocess.CompletedProcess[str]:
    """The analyst's command line, as a process, in the fleet's folder (with this
    checkout's code first on the path, as the fleet's own processes have)."""
    env = {
        **os.environ, "OODIDA_CREDENTIALS": str(fleet.analyst_credentials), "OODIDA_SERVER": f"127.0.0.1:{fleet.port}",
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    return subprocess.run(
        [sys.executable, "-m", "oodida", *args], capture_output=True, text=True, timeout=90, env=env, check=False,
        cwd=fleet.workdir,
    )


def keys_and_modules(fleet: SigningFleet, workdir: Path) -> None:
    for name in ("alice", "mallory"):
        made = oodida(fleet, "keygen", name, "--json")
        assert made.returncode == 0, made.stderr
    again = oodida(fleet, "keygen", "alice")
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    fleet.trusted = ("alice.pub",)  # relative to the agent's config, which is in the same folder
    for v in (1, 2, 3):
        (workdir / f"count_v{v}.py").write_text(on_board(v))


FLEET = FleetSpec("signing", kind=SigningFleet, prepare=keys_and_modules,
                  options={"vehicles": 3, "speed": 1.0, "loop": True, "offsets": [0.0, 20.0, 40.0],
                           "signals": ["SPEED"]})


@pytest.mark.timeout(60)
async def test_an_unsigned_submit_runs_nowhere_and_each_vehicle_says_why(fleet):
    client = await fleet.client()
    try:
        spec = AssignmentSpec(
            signals=["SPEED"], window=WindowSpec(amount=0.3), iterations=1, deadline=10.0,
            on_board_module=ModuleSource(name="count_v1.py", source=on_board(1)),
        )
        a = (await client.submit(spec)).assignment
        got = [r async for r in client.results(a, follow=True) if hasattr(r, "vehicles")]
        versions = await client.versions(a)
    finally:
        await client.close()
    assert len(got) == 1 and got[0].status == "failed"
    assert sorted(got[0].vehicles) == fleet.vehicle_ids
    for report in got[0].vehicles.values():
        assert not report.ok
        assert "no version of assignment" in report.error and "count_v1.py is not signed" in report.error
    assert versions.versions[0].acked == [] and versions.versions[0].signer is None


async def test_only_modules_signed_by_a_trusted_key_run_whatever_the_server_sends(fleet):
    alice = load_signing_key(fleet.workdir / "alice")
    mallory = load_signing_key(fleet.workdir / "mallory")

    submitted = await asyncio.to_thread(oodida,
        fleet, "submit", "--signals", "SPEED", "--window", "0.3s", "--iterations", "0", "--deadline", "10",
        "--on-board-module", "count_v1.py", "--sign", "alice", "--json",
    )
    assert submitted.returncode == 0, submitted.stderr
    a = json.loads(submitted.stdout.splitlines()[0])["assignment"]

    client = await fleet.client()
    try:
        got = await wait_iterations(client, a, 2)
        assert all(r.status == "complete" and r.code_hash == H1 for r in got)
    finally:
        await client.close()

    signed = await asyncio.to_thread(oodida, fleet, "deploy", "count_v2.py", "--assignment", str(a), "--on-board",
                                     "--sign", "alice")
    assert signed.returncode == 0, signed.stdout + signed.stderr
    assert f"signed count_v2.py with key {alice.key_id}" in signed.stdout
    assert f"3 of 3 run {H2[:12]}" in signed.stdout

    unsigned = await asyncio.to_thread(oodida, fleet, "deploy", "count_v3.py", "--assignment", str(a), "--on-board")
    assert unsigned.returncode == 1
    for vehicle in fleet.vehicle_ids:  # the analyst sees each vehicle's refusal and its reason
        assert any(
            line.split()[0] == vehicle and "REFUSED it, keeps its version" in line
            and "count_v3.py is not signed" in line
            for line in unsigned.stdout.splitlines() if line.startswith("  ")
        ), unsigned.stdout
    assert f"0 of 3 run {H3[:12]}" in unsigned.stdout and "refused by car-1, car-2, car-3" in unsigned.stdout

    client = await fleet.client()
    try:
        before = await processes(client)
        refusals = {}
        _, end = await deploy(
            client, assignment=a, side="on_board",
            module=mallory.sign(ModuleSource(name="count_v3.py", source=on_board(3)), "on_board"),
        )
        refusals["untrusted"] = end

        # a compromised server: the stored v1 is altered in the server's own database, and a
        # rollback sends the altered source with the analyst's valid signature of v1
        db = sqlite3.connect(fleet.workdir / "server.sqlite3", timeout=30)
        with db:
            assert db.execute("UPDATE modules SET source = ? WHERE hash = ?", (EVIL, H1)).rowcount == 1
        db.close()
        _, end = await deploy(client, assignment=a, side="on_board", code_hash=H1[:10])
        refusals["tampered"] = end

        t = time.time()
        after = await wait_iterations(client, a, 3, after=t)
        still = await processes(client)
    finally:
        await client.close()
    untrusted, tampered = refusals["untrusted"], refusals["tampered"]
    assert untrusted.acked == [] and sorted(untrusted.refused) == fleet.vehicle_ids
    for reason in untrusted.refused.values():
        assert f"signed by key {mallory.key_id}, which is not trusted" in reason
    assert tampered.code_hash == source_hash(EVIL)  # what the server sent is not what alice signed
    assert tampered.acked == [] and sorted(tampered.refused) == fleet.vehicle_ids
    for reason in tampered.refused.values():
        assert f"signature by key {alice.key_id} does not verify over this source" in reason
    # every vehicle kept the signed v2, kept answering, and nothing was restarted
    for r in after:
        assert r.status == "complete" and r.code_hash == H2, (r.status, r.reason)
        assert sorted(r.vehicles) == fleet.vehicle_ids
        assert {v.value["version"] for v in r.vehicles.values()} == {2}
    assert still == before
    for vehicle in fleet.vehicle_ids:
        log = (fleet.workdir / f"{vehicle}.log").read_text()
        assert "refused module count_v3.py" in log and "is not signed" in log
        assert f"keeping {H2[:12]}: signature check failed" in log and "does not verify" in log

    # a vehicle that restarts is sent its version again, with the signature, and runs it
    restarted = fleet.vehicle_ids[0]
    fleet.kill_agent(restarted, signal.SIGTERM)
    fleet.start_agent(0)

    client = await fleet.client()
    try:
        await fleet.wait_connected(client, [restarted])
        t = time.time()
        got = await wait_iterations(client, a, 2, after=t)
        versions, _ = await client.versions(a), await finish(client, a)
    finally:
        await client.close()
    for r in got:
        assert r.status == "complete" and r.code_hash == H2 and sorted(r.vehicles) == fleet.vehicle_ids
    listed = [(v.kind, v.code_hash, v.signer, sorted(v.acked)) for v in versions.versions]
    assert listed == [
        ("submit", H1, alice.key_id, fleet.vehicle_ids),
        ("deploy", H2, alice.key_id, fleet.vehicle_ids),
        ("deploy", H3, None, []),
        ("deploy", H3, mallory.key_id, []),
        ("rollback", source_hash(EVIL), alice.key_id, []),
    ]
    shown = await asyncio.to_thread(oodida, fleet, "versions", str(a))
    assert shown.returncode == 0 and alice.key_id in shown.stdout and "unsigned" in shown.stdout


def test_the_example_assignment_signed_runs_its_one_file_on_both_sides(fleet):
    """examples/speeding.toml names one file for both sides: each copy is signed for its
    side, and the vehicles get the on-board one."""
    example = REPO / "examples" / "speeding.toml"
    done = oodida(fleet, "submit", str(example), "--sign", "alice", "--iterations", "2", "--window", "0.5s",
                  "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    reports = [r for r in lines if "iteration" in r]
    assert len(reports) == 2
    for r in reports:
        assert r["status"] == "complete" and sorted(r["vehicles"]) == fleet.vehicle_ids
        assert r["fleet"]["vehicles"] == 3
