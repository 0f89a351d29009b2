"""The off-board server: the house its rooms stand in.

One asyncio process. The listener (server/listener.py) accepts connections, keeps
floods out and runs the handshake; then a vehicle is served by the vehicles' room
(server/vehicles.py: sessions, results in, tasks out, the `Fleet` port the runners
send through) and an analyst by the analysts' room (server/analysts.py: requests,
replies, result streams). `Server` owns what they share (the database, the table of
running assignments, the off-board sandbox) and starts and stops it all; assignments
a previous process left running are resumed before the first connection is accepted
(server/resume.py). Nothing a peer sends may end the process.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Mapping

from oodida.core.errors import OodidaError
from oodida.core.limits import raise_nofile_limit
from oodida.core.metrics import Exporter
from oodida.core.signing import Trust
from oodida.sandbox.supervisor import SandboxLimits
from oodida.server import metrics
from oodida.server.analysts import AnalystRoom, SubmitRefused
from oodida.server.catalogue import Catalogue
from oodida.server.config import ServerConfig
from oodida.server.credentials import Credentials
from oodida.server.dbcheck import DatabaseUnusable, check_database, corruption, describe
from oodida.server.deploys import Deployer
from oodida.server.listener import LISTEN_BACKLOG, Listener
from oodida.server.modules import OffBoardRunner
from oodida.server.result_writer import ResultWriter
from oodida.server.resume import resume_running
from oodida.server.revocation import Revoker
from oodida.server.runner import AssignmentRunner
from oodida.server.store import Store
from oodida.server.vehicles import VehicleRoom, VehicleSession
from oodida.wire import Role
from oodida.wire.messages import Cancel, Cancelled, Message

log = logging.getLogger(__name__)


def open_database(path: str, check: str = "quick") -> tuple[Store, Credentials]:
    """The store and the credentials on `path`, once `check_database` found it usable;
    any SQLite error on opening is one `DatabaseUnusable` sentence too."""
    existed = check_database(path, quick=check == "quick")
    try:
        store = Store(path)
        credentials = Credentials(path)
        known = credentials.db.execute("SELECT count(*) FROM credentials").fetchone()[0]
    except sqlite3.Error as exc:
        raise DatabaseUnusable(describe(path, exc)) from None
    if not existed:
        log.warning("database %s did not exist: started a new, empty one", path)
    if not known:
        log.warning("database %s holds no credentials: every handshake is refused until one is added "
                    "(oodida credentials add ID --role vehicle --config server.toml)", path)
    return store, credentials


class ServerFailed(OodidaError):
    """The server stopped on its own, for a reason already logged (a database found
    corrupt while it ran); `oodida server` exits 1."""


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store, self.credentials = open_database(config.database, config.database_check)
        self.revoker = Revoker(self.credentials, config.credential_check)
        self._revoker_task: asyncio.Task[None] | None = None
        self.results = ResultWriter(self.store)
        self.catalogue = Catalogue()  # each vehicle's signals, as it reported them
        self.runners: dict[int, AssignmentRunner] = {}  # the running assignments, shared by both rooms
        self.port: int | None = None
        self.failed: str | None = None  # why the server stops on its own (logged once)
        self._failed = asyncio.Event()
        sandbox = config.sandbox
        self.off_board = OffBoardRunner(
            SandboxLimits(call_timeout=sandbox.call_timeout, memory_mb=sandbox.memory_mb, uid=sandbox.uid,
                          max_workers=sandbox.max_workers)
        )
        self.trust = Trust.from_files(config.signing.known_keys)  # never requires: the vehicles decide
        self._metrics: Exporter | None = None  # the /metrics page, while serving
        self.vehicle_room = VehicleRoom(
            config, self.store, self.results, self.catalogue, self.runners,
            publish=lambda assignment, event: self.analyst_room.publish(assignment, event),
            database_failed=self.database_failed,
        )
        self.vehicles: Mapping[str, VehicleSession] = self.vehicle_room.sessions  # who is connected now
        self.deployer = Deployer(self.store, self.off_board, self.vehicle_room.connected, self.vehicle_room.send_to,
                                 self.trust)
        self.analyst_room = AnalystRoom(
            config, self.store, self.credentials, self.catalogue, self.vehicle_room, self.runners, self.off_board,
            self.trust, self.deployer, database_failed=self.database_failed,
        )
        analysts = self.analyst_room.serve
        self.listener = Listener(
            config, self.credentials, self.revoker,
            {Role.VEHICLE: self.vehicle_room.serve, Role.ANALYST: analysts, Role.READER: analysts},
            admit=self.vehicle_room.admit, database_failed=self.database_failed,
        )

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._metrics = metrics.start(self, self.config.metrics)  # first: a taken port stops nothing half-started
        await self.listener.bind()  # bound first, accepting later: a port in use stops us before anything is resumed
        resumed = resume_running(self.vehicle_room, self.store, self.off_board)  # before any vehicle can send a result
        self.runners.update(resumed)
        nofile = raise_nofile_limit()
        log.info("open files limit %d (a connection each)", nofile[0])
        await self.listener.open()
        self._revoker_task = asyncio.create_task(self.revoker.run(self.database_failed), name="revoker")
        self.port = self.listener.port
        log.info("listening on %s:%d (%s), database %s", self.config.listen.host, self.port,
                 "plain TCP" if self.config.tls is None else "TLS", self.config.database)
        for runner in resumed.values():
            runner.start()

    async def stop(self) -> None:
        if self._revoker_task is not None:
            self._revoker_task.cancel()
            await asyncio.gather(self._revoker_task, return_exceptions=True)
        connections = self.listener.close()
        for runner in list(self.runners.values()):
            runner.suspend()  # a server stopping is not the assignment ending: the next one resumes it
        tasks = [r.task for r in self.runners.values() if r.task] + connections
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.listener.wait_closed()
        await self.off_board.close()
        metrics.stop(self._metrics)
        self.store.close()
        self.credentials.close()

    def database_failed(self, exc: BaseException) -> bool:
        """If `exc` says the database is corrupt: log it once, with the reason, and stop
        the server (`serve` ends, `oodida server` exits 1); True then.

        Why stop rather than serve on: what is left would be a server that takes results
        it cannot store (the vehicles keep them in their outboxes, unacknowledged, and
        resend them to a repaired server: nothing is lost by stopping), handshakes that
        fail or not depending on which page is damaged, and a traceback per connection.
        A restart then meets the check at start (`server.dbcheck`), which says what is
        wrong and exits 2, so systemd does not restart it in a loop."""
        reason = corruption(exc)
        if reason is None:
            return False
        if self.failed is None:
            self.failed = (f"database {self.config.database} is corrupt ({reason}); stopping. "
                           "Restore it from a backup (the vehicles keep unacknowledged results)")
            log.error("%s", self.failed)
            log.debug("the corruption was found here", exc_info=exc)
            self._failed.set()
        return True

    # --- the rooms' doors, for callers that hold the server -----------------------------

    async def send_to(self, vehicle: str, message: Message) -> bool:
        return await self.vehicle_room.send_to(vehicle, message)

    async def send_many(self, messages: Mapping[str, Message]) -> list[str]:
        return await self.vehicle_room.send_many(messages)

    def cancel(self, message: Cancel, analyst: str = "analyst") -> Cancelled:
        return self.analyst_room.cancel(message, analyst)


async def serve(config: ServerConfig, ready: asyncio.Event | None = None) -> None:
    """Run the server until cancelled."""
    server = Server(config)
    await server.start()
    if ready is not None:
        ready.set()
    try:
        await server._failed.wait()
    finally:
        await server.stop()
    raise ServerFailed(server.failed or "stopped")


__all__ = ["LISTEN_BACKLOG", "Server", "ServerFailed", "SubmitRefused", "VehicleSession", "open_database", "serve"]
