"""Every refusal reason of the handshake on the server's /metrics, from a real
server in this process, real peers on loopback, and a real scrape over HTTP."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from oodida.link import ChannelError, HandshakeRefused, connect
from oodida.server import metrics
from oodida.server.app import Server
from oodida.server.config import Limits, Metrics
from oodida.server.credentials import Credentials
from oodida.testing import free_port
from oodida.wire import Role
from tests.credentials import ANALYST_SECRET, VEHICLE_SECRET, plain_config


def _refusals(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        s.labels["reason"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "oodida_server_handshake_refusals_total"
    }


async def test_each_refusal_is_counted_under_its_reason(tmp_path):
    port = free_port()
    config = plain_config(tmp_path, metrics=Metrics(listen=f"127.0.0.1:{port}"), limits=Limits(max_connections=2))
    store = Credentials(config.database)
    store.add("old-car", Role.VEHICLE, secret=VEHICLE_SECRET, expires=time.time() - 60)
    store.add("gone-car", Role.VEHICLE, secret=VEHICLE_SECRET)
    store.revoke("gone-car")
    store.close()

    server = Server(config)
    await server.start()
    try:
        assert set(_refusals(port)) == set(metrics.REFUSAL_REASONS)
        before = await asyncio.to_thread(_refusals, port)

        async def refused(identity: str, secret: str, role: Role = Role.VEHICLE) -> None:
            with pytest.raises(HandshakeRefused):
                await connect("127.0.0.1", server.port or 0, role=role, identity=identity, secret=secret)

        await refused("nobody", VEHICLE_SECRET)  # unknown_identity
        await refused("old-car", VEHICLE_SECRET)  # expired
        await refused("gone-car", VEHICLE_SECRET)  # revoked
        await refused("analyst", ANALYST_SECRET, Role.VEHICLE)  # wrong_role
        await refused("v1", "not-the-secret")  # wrong_proof
        # busy: two open connections are the limit, the third is refused
        held = [await connect("127.0.0.1", server.port or 0, role=Role.VEHICLE, identity=v, secret=VEHICLE_SECRET)
                for v in ("v1", "v2")]
        with pytest.raises(ChannelError):
            await connect("127.0.0.1", server.port or 0, role=Role.VEHICLE, identity="v3", secret=VEHICLE_SECRET)
        for channel, _ in held:
            await channel.close()
        # duplicate: a second connection of a vehicle that is connected
        first, _ = await connect("127.0.0.1", server.port or 0, role=Role.VEHICLE, identity="v1",
                                 secret=VEHICLE_SECRET)
        await refused("v1", VEHICLE_SECRET)
        await first.close()
        after = await asyncio.to_thread(_refusals, port)
        moved = {reason: after[reason] - before[reason] for reason in after}
    finally:
        await server.stop()
    assert moved == {
        "unknown_identity": 1, "expired": 1, "revoked": 1, "wrong_role": 1, "wrong_proof": 1, "busy": 1,
        "duplicate": 1, "timeout": 0, "malformed": 0, "version": 0, "certificate": 0,
    }
