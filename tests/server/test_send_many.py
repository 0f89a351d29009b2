"""The server sends one task to many vehicles: encoded once, written at once where the
socket takes it, waited for where it does not, and the unreachable are named."""

from __future__ import annotations

from oodida.wire.messages import CancelTask, Task, WindowSpec
from tests.helpers import eventually
from tests.servers import vehicle

TASK = Task(assignment=1, iteration=1, signals=["SPEED"], window=WindowSpec(amount=5), methods=["mean"],
            params={}, deadline=10.0)


async def test_every_connected_vehicle_gets_its_message_and_the_absent_are_named(server):
    cars = {name: await vehicle(server, name) for name in ("v1", "v2", "v3")}
    await eventually(lambda: len(server.vehicles) >= 3, what="the server to register the three vehicles")
    # v3's socket takes nothing at once: its send goes the waiting way
    server.vehicles["v3"].channel.writer.transport.set_write_buffer_limits(high=0)
    other = CancelTask(assignment=7)
    unreached = await server.send_many({"v1": TASK, "v2": TASK, "ghost": TASK, "v3": other})
    assert unreached == ["ghost"]
    assert await cars["v1"].recv() == TASK
    assert await cars["v2"].recv() == TASK
    assert await cars["v3"].recv() == other


async def test_a_vehicle_gone_meanwhile_is_named_not_fatal(server):
    v1 = await vehicle(server, "v1")
    await vehicle(server, "v2")
    await eventually(lambda: len(server.vehicles) >= 2, what="the server to register both vehicles")
    server.vehicles["v2"].channel.writer.transport.abort()  # dies under us, still in the table
    assert await server.send_many({"v1": TASK, "v2": TASK}) == ["v2"]
    assert await v1.recv() == TASK
