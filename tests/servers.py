"""In-process servers for tests that play the vehicles and analysts themselves.

Moved out of tests/server/test_app.py so that test modules share them through a helper
module instead of importing each other; the `server` and `start_server` fixtures in
tests/conftest.py start these and stop them at teardown.
"""

from __future__ import annotations

from pathlib import Path

from oodida.link import Channel, connect
from oodida.server.app import Server
from oodida.server.config import ServerConfig
from oodida.wire import Role
from oodida.wire.messages import SourceState, VehicleStatus
from tests.credentials import ANALYST_SECRET, VEHICLE_SECRET, plain_config

VT, AT = VEHICLE_SECRET, ANALYST_SECRET

STATUS = VehicleStatus(
    frames=0, unknown_frames=0, malformed_frames=0, signal_time=None,
    sources=[SourceState(name="test", state="running")], signals=["SPEED"],
)

OPEN: list[Channel] = []


def config(tmp_path: Path) -> ServerConfig:
    return plain_config(tmp_path)


async def vehicle(server: Server, name: str) -> Channel:
    """A hand-played vehicle, connected and having sent its status (closed when the server stops)."""
    channel, _ = await connect("127.0.0.1", server.port, role=Role.VEHICLE, identity=name, secret=VT)
    OPEN.append(channel)
    await channel.send(STATUS)
    return channel


class Started(Server):
    """A server on a free port that also closes the test's own peers when stopped; stopping
    twice is a no-op, so a test may stop it itself (a restart) and the fixture still can."""

    _stopped = False

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        while OPEN:
            await OPEN.pop().close()
        await super().stop()


async def started(where: Path | ServerConfig) -> Server:
    """A started server on `where` (a directory for plain_config, or a config of its own)."""
    server = Started(where if isinstance(where, ServerConfig) else config(where))
    await server.start()
    return server


def mean_partial(n: int, total: float) -> dict[str, dict[str, dict[str, float]]]:
    return {"mean": {"SPEED": {"n": n, "sum": total}}}
