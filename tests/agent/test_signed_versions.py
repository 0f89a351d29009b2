"""Signed modules on the vehicle, with a real sandbox worker: an agent that requires
signatures loads only what a trusted key signed over the very source it received;
anything else is refused with the reason before the worker sees it, and the previous
version keeps running. Without `require`, a signature by a known key is still
checked; unsigned modules and unknown signers are accepted."""

from __future__ import annotations

import logging

import msgspec
import pytest

from oodida.agent.modules import ModuleRunner
from oodida.agent.versions import ModuleVersions
from oodida.core.signing import Trust, generate_key, load_signing_key
from oodida.sandbox.supervisor import source_hash
from oodida.wire.messages import LoadModule, ModuleSource


def module(version: int) -> ModuleSource:
    return ModuleSource(name=f"v{version}.py", source=f"def on_board(window, params, state):\n    return {version}\n")


def load(assignment: int, m: ModuleSource) -> LoadModule:
    return LoadModule(assignment=assignment, code_hash=source_hash(m.source), module=m)


@pytest.fixture()
def keys(tmp_path):
    for name in ("alice", "mallory"):
        generate_key(tmp_path / name)
    return load_signing_key(tmp_path / "alice"), load_signing_key(tmp_path / "mallory"), tmp_path / "alice.pub"


@pytest.mark.timeout(60)
async def test_a_vehicle_that_requires_signatures_runs_only_what_a_trusted_key_signed(keys, caplog):
    alice, mallory, alice_pub = keys

    runner = ModuleRunner()
    versions = ModuleVersions(runner, Trust.from_files([alice_pub], require=True))
    try:
        unsigned = await versions.load(load(1, module(1)))  # nothing loaded yet: refused, and remembered
        assert not unsigned.ok and "is not signed" in unsigned.error
        assert 1 not in versions.current and "is not signed" in versions.refused[1]

        v1 = alice.sign(module(1), "on_board")
        ack = await versions.load(load(1, v1))
        assert ack.ok, ack.error
        assert versions.current[1].module == v1 and 1 not in versions.refused
        loaded = runner.info().modules
        worker = runner.supervisor(1).pid

        v2 = module(2)
        tampered = msgspec.structs.replace(v1, source=v2.source)  # a valid old signature on altered source
        refusals = {
            "is not signed": v2,
            f"signed by key {mallory.key_id}, which is not trusted": mallory.sign(v2, "on_board"),
            "does not verify over this source": tampered,
            "does not verify": alice.sign(v2, "off_board"),  # signed for the server, not for vehicles
            "does not verify ": msgspec.structs.replace(mallory.sign(v2, "on_board"), signer=alice.key_id),
        }
        caplog.set_level(logging.WARNING, logger="oodida.agent.versions")
        caplog.clear()
        for expect, m in refusals.items():
            ack = await versions.load(load(1, m))
            assert not ack.ok and "signature check failed" in ack.error and expect.strip() in ack.error, ack.error
            assert versions.current[1].module == v1  # the signed version keeps running
            assert expect.strip() in versions.refused[1]
        # nothing refused reached the worker: no module loaded, no process started
        assert runner.info().modules == loaded and runner.supervisor(1).pid == worker
        refused_lines = [r.getMessage() for r in caplog.records if "refused module" in r.getMessage()]
        assert len(refused_lines) == len(refusals)
        assert all("keeping " + source_hash(v1.source)[:12] in line for line in refused_lines)
        assert all("signature check failed" in line for line in refused_lines)

        v2_signed = alice.sign(v2, "on_board")
        assert (await versions.load(load(1, v2_signed))).ok
        assert versions.current[1].module == v2_signed and 1 not in versions.refused
    finally:
        await runner.close()


@pytest.mark.timeout(60)
async def test_without_require_unsigned_modules_run_but_a_known_key_must_verify(keys):
    alice, mallory, alice_pub = keys

    runner = ModuleRunner()
    versions = ModuleVersions(runner, Trust.from_files([alice_pub], require=False))
    try:
        assert (await versions.load(load(1, module(1)))).ok  # unsigned: accepted
        assert (await versions.load(load(1, mallory.sign(module(2), "on_board")))).ok  # unknown key: accepted
        assert (await versions.load(load(1, alice.sign(module(3), "on_board")))).ok
        tampered = msgspec.structs.replace(alice.sign(module(3), "on_board"), source=module(4).source)
        ack = await versions.load(load(1, tampered))
        assert not ack.ok and "does not verify" in ack.error
        assert versions.current[1].code_hash == source_hash(module(3).source)
    finally:
        await runner.close()
