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

from agent.config import AgentConfig, BusSource, ConfigError, GpsSource, LogSource
from agent.gps import GpsPump
from agent.modules import ModuleRunner
from agent.outbox import Outbox
from agent.pump import Pump
from agent.store import SignalStore
from agent.tasks import SignalResolver, TaskRunner
from agent.uplink import Uplink
from hw.dbc import SignalDecoder
from hw.errors import UnknownSignalError
from hw.nmea import NmeaDecoder
from hw.serial_port import SerialPort
from hw.sources import open_source
from sandbox.supervisor import SandboxLimits
from wire.messages import SourceState, VehicleStatus

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 5.0


@dataclass
class Agent:
    config: AgentConfig
    store: SignalStore
    pumps: list[Pump | GpsPump]
    outbox: Outbox
    runner: TaskRunner
    uplink: Uplink

    def status(self) -> VehicleStatus:
        decoders = {id(p.decoder): p.decoder for p in self.pumps}.values()
        return VehicleStatus(
            frames=sum(p.frames for p in self.pumps),
            unknown_frames=sum(d.unknown_frames for d in decoders),
            malformed_frames=sum(d.malformed_frames for d in decoders),
            signal_time=self.store.signal_time,
            sources=[
                SourceState(name=p.name[:256], state=p.state, frames=p.frames, error=p.error)  # type: ignore[arg-type]
                for p in self.pumps
            ],
            signals=self.store.names,
            running=len(self.runner.running),
            pending_results=len(self.outbox),
            pid=os.getpid(),
            sandbox=self.runner.modules.info(),
            modules={str(a): v.code_hash for a, v in self.runner.versions.current.items()},
        )


def build_agent(config: AgentConfig, modules: ModuleRunner | None = None) -> Agent:
    """Open every source and decoder; raises with a clear reason if one cannot be.

    `modules`: a sandbox runner to share (simulated fleets in one process, benchmarks);
    by default the agent has its own worker, as on a vehicle."""
    store = SignalStore(retention=config.buffer.retention, max_samples=config.buffer.max_samples)
    pumps = []
    decoders = []
    gps_sources = []
    for index, source_config in enumerate(config.sources):
        if isinstance(source_config, GpsSource):
            gps_sources.append((index, source_config))  # after the CAN sources: their names win no clash
            continue
        every = SignalDecoder(source_config.dbc)
        names = None if source_config.signals is None else [every.resolve(n) for n in source_config.signals]
        decoder = SignalDecoder(source_config.dbc, names) if names is not None else every
        store.declare(list(decoder.signal_names))
        decoders.append(decoder)
        if isinstance(source_config, LogSource):
            source = open_source(
                "log",
                path=source_config.path,
                speed=source_config.speed,
                offset=source_config.offset,
                loop=source_config.loop,
                channel=source_config.channel,
            )
        else:
            assert isinstance(source_config, BusSource)
            options = dict(interface=source_config.interface, channel=source_config.channel)
            if source_config.bitrate is not None:
                options["bitrate"] = source_config.bitrate
            if source_config.kernel_filters:
                options["can_filters"] = decoder.can_filters()
            source = open_source("bus", **options)
        pumps.append(Pump(f"{index}:{source.describe()}", source, decoder, store))
    for index, gps in gps_sources:
        nmea = NmeaDecoder(gps.prefix)
        clash = sorted(n for n in nmea.signal_names if n in store or any(_defines(d, n) for d in decoders))
        if clash:
            raise ConfigError(f"gps source {index} ({gps.port}): {', '.join(clash)} already recorded; set another prefix")
        port = SerialPort(gps.port, gps.baudrate)
        gps_pump = GpsPump(
            f"{index}:GPS {port.describe()}", port, nmea, store, reopen_min=gps.reopen_min, reopen_max=gps.reopen_max
        )
        pumps.append(gps_pump)
    outbox = Outbox()
    resolver = SignalResolver(decoders, store)
    uplink = Uplink(config.vehicle, config.server, outbox)
    limits = SandboxLimits(
        call_timeout=config.sandbox.call_timeout, memory_mb=config.sandbox.memory_mb, uid=config.sandbox.uid
    )
    runner = TaskRunner(config.vehicle, store, resolver, outbox, uplink.send_result, modules or ModuleRunner(limits))
    agent = Agent(config, store, pumps, outbox, runner, uplink)
    uplink.bind(
        on_task=runner.submit, on_cancel=runner.cancel, status=agent.status, on_module=runner.versions.load
    )
    return agent


def _defines(decoder: SignalDecoder, name: str) -> bool:
    """Whether an analyst's `name` would also mean a signal of this DBC."""
    try:
        decoder.resolve(name)
    except UnknownSignalError:
        return False
    return True


async def run_agent(
    config: AgentConfig, stop: asyncio.Event | None = None, modules: ModuleRunner | None = None
) -> None:
    """Run until `stop` is set or SIGTERM/SIGINT arrives; then stop cleanly."""
    agent = build_agent(config, modules)
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
    try:
        await stop.wait()
    finally:
        log.info("vehicle %s stopping", config.vehicle)
        uplink.cancel()
        await agent.runner.stop()
        try:  # bounded: a stuck close must not keep the agent from exiting
            await asyncio.wait_for(asyncio.gather(uplink, return_exceptions=True), SHUTDOWN_TIMEOUT)
        except asyncio.TimeoutError:
            log.error("uplink did not stop within %s s; exiting anyway", SHUTDOWN_TIMEOUT)
        if agent.uplink.channel is not None:
            await agent.uplink.channel.close()
        for pump in agent.pumps:
            pump.stop()
