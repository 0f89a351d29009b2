"""The on-board agent: sources into the store, tasks from the server, results back.

Everything untrusted or slow is kept off the event loop: sources read in threads,
methods compute in threads (and, later, in the sandbox worker). The loop only talks
to the server, so the vehicle stays reachable whatever the data does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from typing import Any

from oodida.agent import metrics
from oodida.agent.catalogue import CatalogueReporter
from oodida.agent.config import AgentConfig, BusSource, ConfigError, GpsSource, LogSource
from oodida.agent.gps import GpsPump
from oodida.agent.modules import ModuleRunner
from oodida.agent.outbox import Outbox
from oodida.agent.pump import Pump
from oodida.agent.source import SignalSource
from oodida.agent.store import SignalStore
from oodida.agent.tasks import SignalResolver, TaskRunner
from oodida.agent.uplink import Uplink
from oodida.core.service import Notifier
from oodida.core.signing import Trust
from oodida.hw.dbc import SignalDecoder
from oodida.hw.errors import HwError, SourceError, UnknownSignalError
from oodida.hw.nmea import NmeaDecoder
from oodida.hw.serial_port import SerialPort
from oodida.hw.sources import open_source
from oodida.sandbox.supervisor import SandboxLimits
from oodida.wire.messages import Position, SourceState, Task, VehicleStatus
from oodida.wire.states import SourcePhase

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 5.0
STOP_GRACE = 20.0  # seconds running tasks get to finish on SIGTERM (TimeoutStopSec is above it)


@dataclass
class Agent:
    config: AgentConfig
    store: SignalStore
    pumps: list[SignalSource]
    outbox: Outbox
    runner: TaskRunner
    uplink: Uplink

    def status(self) -> VehicleStatus:
        decoders = {id(p.decoder): p.decoder for p in self.pumps}.values()
        return VehicleStatus(
            frames=sum(p.frames for p in self.pumps),
            unknown_frames=sum(d.unknown_frames for d in decoders),
            malformed_frames=sum(d.malformed_frames for d in decoders),
            error_frames=sum(getattr(d, "error_frames", 0) for d in decoders),  # CAN decoders only
            remote_frames=sum(getattr(d, "remote_frames", 0) for d in decoders),
            unreadable_lines=sum(getattr(getattr(p, "source", None), "unreadable", 0) for p in self.pumps),
            late_samples=sum(self.store.late_samples.values()),
            position=newest_position(self.store),
            signal_time=self.store.signal_time,
            sources=[
                SourceState(name=p.name[:256], state=p.state, frames=p.frames, error=p.error)
                for p in self.pumps
            ],
            signals=self.store.names,
            running=len(self.runner.running),
            pending_results=len(self.outbox),
            outbox_dropped=self.outbox.dropped,
            outbox_error=self.outbox.error[:512] if self.outbox.error else None,
            pid=os.getpid(),
            sandbox=self.runner.modules.info(),
            modules={str(a): v.code_hash for a, v in self.runner.versions.current.items()},
        )


def newest_position(store: SignalStore) -> Position | None:
    """The newest fix of the first GPS source that has one (`<source>.LATITUDE` and
    `.LONGITUDE`, as hw/nmea.py names them); None without a GPS or before a fix."""
    for name in store.names:
        if not name.endswith(".LATITUDE"):
            continue
        lat, lon = store.newest(name), store.newest(name[: -len("LATITUDE")] + "LONGITUDE")
        if lat is not None and lon is not None and -90 <= lat[1] <= 90 and -180 <= lon[1] <= 180:
            return Position(latitude=lat[1], longitude=lon[1], time=min(lat[0], lon[0]))
    return None


def build_agent(config: AgentConfig, modules: ModuleRunner | None = None) -> Agent:
    """Open every source and decoder; raises with a clear reason if one cannot be.

    `modules`: a sandbox runner to share (simulated fleets in one process, benchmarks);
    by default the agent has its own worker, as on a vehicle."""
    store = SignalStore(retention=config.buffer.retention, max_samples=config.buffer.max_samples)
    pumps: list[SignalSource] = []
    decoders = []
    gps_sources = []
    for index, source_config in enumerate(config.sources):
        if isinstance(source_config, GpsSource):
            gps_sources.append((index, source_config))  # after the CAN sources: their names win no clash
            continue
        try:
            decoder, source = _open(source_config)
        except (HwError, ValueError) as exc:
            raise _source_problem(index, source_config, exc) from exc
        store.declare(list(decoder.signal_names))
        decoders.append(decoder)
        pumps.append(Pump(f"{index}:{source.describe()}", source, decoder, store))
    for index, gps in gps_sources:
        nmea = NmeaDecoder(gps.prefix)
        clash = sorted(n for n in nmea.signal_names if n in store or any(_defines(d, n) for d in decoders))
        if clash:
            raise ConfigError(
                f"gps source {index} ({gps.port}): {', '.join(clash)} already recorded; set another prefix"
            )
        port = SerialPort(gps.port, gps.baudrate)
        gps_pump = GpsPump(
            f"{index}:GPS {port.describe()}", port, nmea, store, reopen_min=gps.reopen_min, reopen_max=gps.reopen_max
        )
        pumps.append(gps_pump)
    outbox = Outbox(
        config.outbox.path,
        max_results=config.outbox.max_results,
        max_bytes=config.outbox.max_bytes,
        synchronous=config.outbox.synchronous,
    )
    resolver = SignalResolver(decoders, store)
    uplink = Uplink(config.vehicle, config.server, outbox)
    limits = SandboxLimits(
        call_timeout=config.sandbox.call_timeout, memory_mb=config.sandbox.memory_mb, uid=config.sandbox.uid,
        max_workers=config.sandbox.max_workers,
    )
    trust = Trust.from_files(config.signing.trusted_keys, require=config.signing.require)
    runner = TaskRunner(
        config.vehicle, store, resolver, outbox, uplink.send_result, modules or ModuleRunner(limits), trust
    )
    agent = Agent(config, store, pumps, outbox, runner, uplink)
    uplink.bind(
        on_task=runner.submit, on_cancel=runner.cancel, status=agent.status, on_module=runner.versions.load
    )
    uplink.catalogue = CatalogueReporter(store.rates, decoders, refresh=10 * config.server.status_interval)
    return agent


def _open(source_config: LogSource | BusSource) -> tuple[SignalDecoder, Any]:
    every = SignalDecoder(source_config.dbc)
    names = None if source_config.signals is None else [every.resolve(n) for n in source_config.signals]
    decoder = SignalDecoder(source_config.dbc, names) if names is not None else every
    if isinstance(source_config, LogSource):
        return decoder, open_source(
            "log",
            path=source_config.path,
            speed=source_config.speed,
            offset=source_config.offset,
            loop=source_config.loop,
            channel=source_config.channel,
        )
    options: dict[str, Any] = dict(interface=source_config.interface, channel=source_config.channel)
    if source_config.bitrate is not None:
        options["bitrate"] = source_config.bitrate
    if source_config.kernel_filters:
        options["can_filters"] = decoder.can_filters()
    return decoder, open_source("bus", **options)


def _source_problem(index: int, source_config: LogSource | BusSource, exc: Exception) -> Exception:
    """What a source that cannot be opened at start is: the configuration's fault
    (`ConfigError`, exit 2: a missing or bad DBC or log, an unknown signal, channel or
    interface, an offset past the end), or, for a bus whose interface exists, the
    vehicle's now (its device absent or down: exit 1, so systemd tries again later)."""
    kind = "log" if isinstance(source_config, LogSource) else "bus"
    if isinstance(exc, SourceError) and kind == "bus" and not isinstance(exc.__cause__, NotImplementedError):
        return exc
    return ConfigError(f"[[sources]] {index} ({kind}): {exc}")


def _defines(decoder: SignalDecoder, name: str) -> bool:
    """Whether an analyst's `name` would also mean a signal of this DBC."""
    try:
        decoder.resolve(name)
    except UnknownSignalError:
        return False
    return True


async def run_agent(
    config: AgentConfig,
    stop: asyncio.Event | None = None,
    modules: ModuleRunner | None = None,
    grace: float = STOP_GRACE,
    notifier: Notifier | None = None,
) -> None:
    """Run until `stop` is set or SIGTERM/SIGINT arrives; then stop cleanly.

    Under systemd (`Type=notify`): READY=1 once the config is loaded and every source
    is started, STATUS= lines with the link and task state, WATCHDOG=1 from this loop
    (see `_alive`), STOPPING=1 when the stop begins. The stop: no new tasks, running
    ones get up to `grace` seconds to finish and send their results (see `_finish`),
    then everything is closed; `oodida agent` then exits 0."""
    agent = build_agent(config, modules)
    exporter = metrics.start(agent, config.metrics)  # None without [metrics]; a taken port stops the start here
    notifier = notifier or Notifier()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    agent.store.bind_loop(loop)
    for pump in agent.pumps:
        pump.start()
    log.info("vehicle %s: %d source(s), %d signals", config.vehicle, len(agent.pumps), len(agent.store.names))
    uplink = asyncio.create_task(agent.uplink.run(), name="uplink")
    notifier.ready(_status_line(agent))
    service = [
        asyncio.create_task(notifier.watchdog(lambda: _alive(uplink)), name="watchdog"),
        asyncio.create_task(_report_status(agent, notifier), name="status"),
        asyncio.create_task(_retry_outbox(agent.outbox), name="outbox"),
    ]
    try:
        await stop.wait()
        log.info("vehicle %s stopping", config.vehicle)
        notifier.stopping(f"stopping: {len(agent.runner.running)} task(s) finishing")
        await _finish(agent, grace)
    finally:
        for job in service:
            job.cancel()
        uplink.cancel()
        await agent.runner.stop()
        try:  # bounded: a stuck close must not keep the agent from exiting
            await asyncio.wait_for(asyncio.gather(uplink, *service, return_exceptions=True), SHUTDOWN_TIMEOUT)
        except TimeoutError:
            log.error("uplink did not stop within %s s; exiting anyway", SHUTDOWN_TIMEOUT)
        if agent.uplink.channel is not None:
            await agent.uplink.channel.close()
        for pump in agent.pumps:
            pump.stop()
        metrics.stop(exporter)
        agent.outbox.close()


async def _finish(agent: Agent, grace: float) -> None:
    """The graceful part of a stop, bounded by `grace` seconds in all.

    New tasks are refused from now on (the server closes those iterations without
    this vehicle, at their quorum or deadline). Tasks already running finish and
    their results go to the outbox and, while the link is up, to the server; we then
    wait for the server's acknowledgements. Whatever is still unacknowledged when
    the grace period ends stays in the outbox file and goes out after the next start
    (logged, by assignment and iteration). Tasks still running at the end of the grace period are cancelled (their
    iterations get no answer from this vehicle)."""
    deadline = asyncio.get_running_loop().time() + grace
    agent.uplink.on_task = _refuse
    running = list(agent.runner.running.values())
    if running:
        log.info("waiting up to %.0f s for %d running task(s)", grace, len(running))
        _, late = await asyncio.wait(running, timeout=grace)
        if late:
            log.warning("%d task(s) still running after %.0f s: cancelled", len(late), grace)
    while len(agent.outbox) and agent.uplink.channel is not None and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
        # acknowledgements arrive through the uplink; the outbox (synchronous SQLite) has no event to await
        await asyncio.sleep(0.05)  # noqa: ASYNC110
    unsent = [(r.assignment, r.iteration) for r in agent.outbox.pending()]
    if unsent:
        log.info(
            "%d result(s) not acknowledged by the server wait in %s for the next start: %s",
            len(unsent), agent.outbox.path, ", ".join(f"{a}/{i}" for a, i in unsent),
        )


async def _retry_outbox(outbox: Outbox, every: float = 5.0) -> None:
    """Results the disk refused (full, failing) wait in memory; write them once it takes
    them again, even if no new result comes to trigger a write."""
    while True:
        await asyncio.sleep(every)
        if outbox.unsaved:
            outbox.retry()


def _refuse(task: Task) -> None:
    log.info("stopping: task %d/%d not taken", task.assignment, task.iteration)


def _alive(uplink: asyncio.Task[None]) -> str | None:
    """What "alive" means for the watchdog: the event loop turns (the ping runs on it)
    and the uplink task, which must run for the agent's life, has not died. A lost
    server is not death (a vehicle in a tunnel is healthy; a restart would not bring
    the network back and would lose the buffered signals), nor is a failed source (it
    is reported in the status; a restart cannot plug a CAN bus back in)."""
    if uplink.done():
        return "the uplink task ended" + (
            f" ({uplink.exception()!r})" if not uplink.cancelled() and uplink.exception() else ""
        )
    return None


def _status_line(agent: Agent) -> str:
    link = agent.uplink.config
    where = f"{link.host}:{link.port}"
    sources = sum(p.state == SourcePhase.RUNNING for p in agent.pumps)
    return (
        f"{'connected to' if agent.uplink.channel is not None else 'not connected to'} {where}; "
        f"{sources}/{len(agent.pumps)} source(s) running; {len(agent.runner.running)} task(s) running; "
        f"{len(agent.outbox)} result(s) unacknowledged"
        + (f" ({agent.outbox.dropped} dropped over the outbox's limits)" if agent.outbox.dropped else "")
        + (f"; {agent.outbox.unsaved} held in memory: {agent.outbox.error}" if agent.outbox.unsaved else "")
    )


async def _report_status(agent: Agent, notifier: Notifier, every: float = 1.0) -> None:
    """STATUS= for `systemctl status`, checked every `every` s, sent when it changes."""
    if not notifier.enabled:
        return
    while True:
        notifier.status(_status_line(agent))
        await asyncio.sleep(every)
