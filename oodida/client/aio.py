"""`AsyncClient`: the analysts' API for asyncio code (and what the sync `Client`,
the CLI and the dashboard are built on).

    client = await AsyncClient.connect()              # the credential file, as oodida.connect()
    a = await client.submit(signals=["SPEED"], window="5s", iterations=4, on_board=["mean", "histogram"])
    results = await a.wait(progress=True)
    df = results.to_pandas()
    async for it in a.follow(): ...
    await a.deploy("mine_v2.py", side="on_board")

Every method is one request of the protocol; the answers come back as `Results`,
plain records (lists of dicts) or, where analysts look at tables, DataFrames when
pandas is installed. A refusal raises `RequestFailed` with the server's reason.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from oodida.client.config import ConfigurationError, find_credentials, parse_address
from oodida.client.progress import Progress
from oodida.client.protocol import AnalystClient, RequestFailed
from oodida.client.results import MissingExtra, Results, frame
from oodida.client.shape import shape
from oodida.core.args import parse_window
from oodida.core.errors import OodidaError
from oodida.wire.messages import (
    AssignmentInfo,
    AssignmentSpec,
    DeployEnd,
    Deploying,
    DeployProgress,
    IterationReport,
    ModuleSource,
    ResultsEnd,
    StatusReply,
    VersionsReply,
)

Event = Deploying | DeployProgress | DeployEnd


class SpecError(OodidaError, ValueError):
    """An assignment as given to `submit` cannot be sent; the message says which part."""


def _table(records: list[dict[str, Any]], as_frame: bool | None) -> Any:
    """A DataFrame when pandas is there (or asked for), else the records."""
    if as_frame is False:
        return records
    try:
        return frame(records)
    except MissingExtra:
        if as_frame:
            raise
        return records


def read_module(path: str | os.PathLike[str]) -> ModuleSource:
    """A module file as the wire carries it (its file name and text)."""
    p = Path(path)
    try:
        source = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read module {p}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return ModuleSource(name=p.name, source=source)
    except (msgspec.ValidationError, ValueError) as exc:
        raise SpecError(f"module {p}: {exc}") from None


def _module(value: str | os.PathLike[str] | ModuleSource | None) -> ModuleSource | None:
    if value is None or isinstance(value, ModuleSource):
        return value
    return read_module(value)


def build_spec(
    signals: Sequence[str],
    window: str | float | dict[str, Any] = "5s",
    iterations: int = 1,
    on_board: Sequence[str] | str = ("count",),
    off_board: str | os.PathLike[str] | None = "fleet",
    params: dict[str, Any] | None = None,
    *,
    vehicles: Sequence[str] | int | None = None,
    quorum: int | float | None = None,
    deadline: float = 60.0,
    name: str = "",
    on_board_module: str | os.PathLike[str] | ModuleSource | None = None,
    off_board_module: str | os.PathLike[str] | ModuleSource | None = None,
) -> AssignmentSpec:
    """An `AssignmentSpec` from the arguments analysts write. `on_board` names built-in
    methods, or one module file (`"mine.py"`); `off_board` is "fleet" (the built-ins'
    exact merge), "none", or a module file; `window` is "5s", "100samples",
    "latest:10s", a number of seconds or the fields of `WindowSpec`."""
    if isinstance(signals, str):
        signals = [s for s in signals.split(",") if s]
    if isinstance(on_board, str):
        on_board = [m for m in on_board.split(",") if m]
    methods = [m for m in on_board if not str(m).endswith(".py")]
    files = [m for m in on_board if str(m).endswith(".py")]
    if len(files) > 1 or (files and on_board_module is not None):
        raise SpecError("one on-board module at most: on_board=['mine.py'] or on_board_module='mine.py'")
    if files:
        on_board_module = files[0]
    if off_board is not None and str(off_board).endswith(".py"):
        off_board_module, off_board = off_board, "fleet"
    if isinstance(window, (int, float)) and not isinstance(window, bool):
        window_fields: dict[str, Any] = {"amount": float(window), "unit": "s"}
    elif isinstance(window, str):
        try:
            window_fields = parse_window(window)
        except ValueError as exc:
            raise SpecError(str(exc)) from None
    elif isinstance(window, dict):
        window_fields = dict(window)
    else:
        raise SpecError(f"window {window!r}: write e.g. '5s', '100samples', 'latest:10s' or a number of seconds")
    data: dict[str, Any] = {
        "signals": list(signals),
        "window": window_fields,
        "iterations": iterations,
        "on_board": methods if methods or on_board_module is not None else ["count"],
        "off_board": off_board or "none",
        "params": dict(params or {}),
        "deadline": deadline,
        "name": name,
    }
    modules = {"on_board_module": _module(on_board_module), "off_board_module": _module(off_board_module)}
    for key, module in modules.items():
        if module is not None:
            data[key] = msgspec.structs.asdict(module)
    if modules["on_board_module"] is not None and not methods:
        data["on_board"] = []
    if vehicles is not None:
        data["vehicles"] = vehicles if isinstance(vehicles, int) else list(vehicles)
    if quorum is not None:
        data["quorum"] = quorum
    try:
        return msgspec.convert(data, AssignmentSpec, strict=False)
    except (msgspec.ValidationError, ValueError) as exc:
        raise SpecError(f"assignment: {exc}") from None


@dataclass(frozen=True)
class DeployOutcome:
    """How a deploy or rollback ended: who runs the version, who refused it, who has
    not answered yet; `complete` is whether the quorum was reached."""

    assignment: int
    side: str
    code_hash: str
    name: str
    rollback: bool
    acked: list[str]
    refused: dict[str, str]
    waiting: list[str]
    offline: list[str]
    elapsed: float
    complete: bool
    events: list[Event] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """The quorum runs the version and no vehicle refused it."""
        return self.complete and not self.refused

    def to_dict(self) -> dict[str, Any]:
        """The public JSON shape (`oodida deploy --json`'s last line)."""
        return {
            "assignment": self.assignment, "side": self.side, "code_hash": self.code_hash, "name": self.name,
            "rollback": self.rollback, "acked": self.acked, "refused": self.refused, "waiting": self.waiting,
            "offline": self.offline, "elapsed": self.elapsed, "complete": self.complete, "ok": self.ok,
        }


def deploy_outcome(side: str, events: list[Event]) -> DeployOutcome:
    start = next(e for e in events if isinstance(e, Deploying))
    end = next(e for e in events if isinstance(e, DeployEnd))
    return DeployOutcome(
        assignment=end.assignment, side=side, code_hash=end.code_hash, name=start.name, rollback=start.rollback,
        acked=list(end.acked), refused=dict(end.refused), waiting=list(end.waiting), offline=list(start.offline),
        elapsed=end.elapsed, complete=end.complete, events=events,
    )


class AsyncClient:
    """One connection to the server, as an analyst (or a reader, who may only read).

    Requests may run at once (a `follow()` while `status()` is asked); close it with
    `await client.close()` or use `async with`."""

    def __init__(self, protocol: AnalystClient) -> None:
        self.protocol = protocol

    @classmethod
    async def connect(
        cls,
        credentials: str | os.PathLike[str] | None = None,
        *,
        server: str | tuple[str, int] | None = None,
        ca: str | None = None,
        timeout: float = 10.0,
    ) -> AsyncClient:
        """Connect with a credential file: `credentials`, else $OODIDA_CREDENTIALS,
        else ~/.config/oodida/credentials.toml (see `oodida.client.config`). `server`
        ("HOST:PORT", default $OODIDA_SERVER, else the file's) and `ca` override the
        file's address and CA certificate."""
        path = find_credentials(credentials)
        if server is None:
            server = os.environ.get("OODIDA_SERVER") or None
        address = parse_address(server) if isinstance(server, str) else server
        try:
            protocol = await AnalystClient.from_file(path, server=address, ca=ca, timeout=timeout)
        except FileNotFoundError as exc:
            raise ConfigurationError(f"cannot read credential file {path}: {exc.strerror}") from None
        return cls(protocol)

    @classmethod
    async def connect_with(
        cls, host: str, port: int, secret: str, *, identity: str, ssl_context: Any = None, timeout: float = 10.0,
        role: Any = None,
    ) -> AsyncClient:
        """Connect with explicit credentials instead of a file (tests, tools)."""
        from oodida.wire import Role

        protocol = await AnalystClient.connect(
            host, port, secret, identity=identity, role=role or Role.ANALYST, ssl_context=ssl_context, timeout=timeout,
        )
        return cls(protocol)

    async def close(self) -> None:
        """Close the connection (requests still waiting fail with `ConnectionLost`)."""
        await self.protocol.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the fleet -------------------------------------------------------------------

    async def status(self) -> StatusReply:
        """The server's status message as it came (vehicles, assignments, sandbox)."""
        return await self.protocol.status()

    async def vehicles(self, *, as_frame: bool | None = None) -> Any:
        """The connected vehicles, one row each: id, connected since, address, frames
        read, signals served, tasks running, results not yet sent, sources' states.
        A DataFrame when pandas is installed (or `as_frame=True`), else records."""
        status = await self.status()
        rows = []
        for v in status.vehicles:
            s = v.status
            rows.append({
                "vehicle": v.vehicle,
                "connected_at": v.connected_at,
                "address": v.address,
                "reporting": s is not None,
                "frames": s.frames if s else None,
                "unknown_frames": s.unknown_frames if s else None,
                "malformed_frames": s.malformed_frames if s else None,
                "signal_time": s.signal_time if s else None,
                "signals": len(s.signals) if s else None,
                "tasks": s.running if s else None,
                "unsent_results": s.pending_results if s else None,
                "sources": ", ".join(src.state for src in s.sources) if s else None,
                "modules": dict(s.modules) if s else {},
            })
        return _table(rows, as_frame)

    async def assignments(self, *, as_frame: bool | None = None) -> Any:
        """Every assignment the server knows, with its state and progress."""
        status = await self.status()
        return _table([_assignment_row(a) for a in status.assignments], as_frame)

    async def signals(self, *, vehicle: str | None = None, as_frame: bool | None = None) -> Any:
        """The signal catalogue, a row per signal: its unit and range from the DBC, the
        vehicles that serve it, and the rate each of them measures (samples per second
        of signal time; None under two samples). Vehicles report it when they connect;
        one that left is still listed, from its last report."""
        reply = await self.protocol.catalogue(vehicle)
        rows: dict[str, dict[str, Any]] = {}
        for vs in reply.vehicles:
            for s in vs.signals:
                row = rows.setdefault(s.name, {"signal": s.name, "unit": s.unit, "minimum": s.minimum,
                                               "maximum": s.maximum, "vehicles": [], "rates": {}, "samples": 0})
                row["vehicles"].append(vs.vehicle)
                row["rates"][vs.vehicle] = s.rate
                row["samples"] += s.samples
        for row in rows.values():
            row["vehicles"].sort()
        return _table([rows[name] for name in sorted(rows)], as_frame)

    # --- assignments -----------------------------------------------------------------

    async def submit(
        self,
        signals: Sequence[str] | str | None = None,
        window: str | float | dict[str, Any] = "5s",
        iterations: int = 1,
        on_board: Sequence[str] | str = ("count",),
        off_board: str | os.PathLike[str] | None = "fleet",
        params: dict[str, Any] | None = None,
        *,
        spec: AssignmentSpec | None = None,
        sign: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> AsyncAssignment:
        """Start an assignment; see `build_spec` for the arguments (or pass a ready
        `spec`). `options`: vehicles (ids or a count), quorum, deadline (seconds per
        iteration), name, on_board_module, off_board_module. `sign`: a private key
        file (`oodida keygen`) that signs the modules."""
        if spec is None:
            if signals is None:
                raise SpecError("submit needs signals=[...] (or spec=)")
            spec = build_spec(signals, window, iterations, on_board, off_board, params, **options)
        if sign is not None:
            from oodida.core.signing import load_signing_key, sign_spec

            spec = sign_spec(load_signing_key(str(sign)), spec)
        submitted = await self.protocol.submit(spec)
        return AsyncAssignment(self, submitted.assignment, list(submitted.vehicles), spec)

    def assignment(self, assignment: int) -> AsyncAssignment:
        """A handle on an assignment by its number (submitted earlier, or by someone else)."""
        return AsyncAssignment(self, int(assignment), [], None)

    async def info(self, assignment: int) -> AssignmentInfo:
        """The assignment's entry in the server's status (state, iterations done)."""
        status = await self.status()
        for a in status.assignments:
            if a.assignment == assignment:
                return a
        raise RequestFailed(f"no assignment {assignment}", "not_found")

    async def results(self, assignment: int, *, since: int = 0, iteration: int | None = None) -> Results:
        """The iterations closed so far (after `since`; or only `iteration`)."""
        reports: list[IterationReport] = []
        end: ResultsEnd | None = None
        after = since if iteration is None else iteration - 1
        async for item in self.protocol.results(assignment, follow=False, since=after):
            if isinstance(item, IterationReport):
                if iteration is None or item.iteration == iteration:
                    reports.append(item)
            else:
                end = item
        return Results(assignment, reports, end.state if end else None, end.reason if end else None)

    async def follow(self, assignment: int, *, since: int = 0) -> AsyncIterator[Results]:
        """Each iteration as soon as it closes (those closed already first), as a
        one-iteration `Results` (its `state` is None: the assignment's is not known
        until it ends; `wait()` or `state()` give it). Ends when the assignment does."""
        async for item in self.protocol.results(assignment, follow=True, since=since):
            if isinstance(item, IterationReport):
                yield Results(assignment, [item], None)

    async def wait(
        self, assignment: int, *, progress: bool | None = None, on_iteration: Callable[[Results], Any] | None = None,
    ) -> Results:
        """Until the assignment ends; returns all its results (`state` final). With
        `progress` (default: when stderr is a terminal or in a notebook), a line that
        says how the iteration under way goes. `on_iteration` sees each as it closes."""
        bar = Progress.create(progress)
        reports: list[IterationReport] = []
        state, reason = None, None
        poller = asyncio.create_task(self._poll_progress(assignment, bar)) if bar.active else None
        try:
            async for item in self.protocol.results(assignment, follow=True, since=0):
                if isinstance(item, IterationReport):
                    reports.append(item)
                    bar.closed(item)
                    if on_iteration is not None:
                        outcome = on_iteration(Results(assignment, [item], None))
                        if asyncio.iscoroutine(outcome):
                            await outcome
                else:
                    state, reason = item.state, item.reason
        finally:
            if poller is not None:
                poller.cancel()
                await asyncio.gather(poller, return_exceptions=True)
            bar.finish(state)
        return Results(assignment, reports, state, reason)

    async def _poll_progress(self, assignment: int, bar: Progress, every: float = 0.5) -> None:
        while True:
            try:
                bar.update(await self.info(assignment))
            except RequestFailed:
                pass
            await asyncio.sleep(every)

    async def cancel(self, assignment: int) -> str:
        """Stop the assignment after its current iteration; returns its state."""
        reply = await self.protocol.cancel(assignment)
        return reply.state

    # --- code versions ---------------------------------------------------------------

    async def deploy(
        self,
        assignment: int,
        module: str | os.PathLike[str] | ModuleSource,
        side: str = "on_board",
        *,
        vehicles: Sequence[str] | None = None,
        quorum: int | float | None = None,
        timeout: float = 30.0,
        sign: str | os.PathLike[str] | None = None,
        on_event: Callable[[Event], Any] | None = None,
    ) -> DeployOutcome:
        """Replace the assignment's module on one side (`on_board` or `off_board`)
        between two iterations, nothing restarted. Returns once `quorum` of the
        vehicles (all by default) run it, or at `timeout`; `on_event` sees the
        server's answers as they come. A refusal raises `RequestFailed` (the old
        version keeps running)."""
        _side(side)
        source = _module(module)
        assert source is not None
        if sign is not None:
            from oodida.core.signing import load_signing_key

            source = load_signing_key(str(sign)).sign(source, side)
        return await self._deploy(assignment, side, on_event, module=source, vehicles=vehicles, quorum=quorum,
                                  timeout=timeout)

    async def rollback(
        self,
        assignment: int,
        hash_prefix: str,
        side: str | None = None,
        *,
        vehicles: Sequence[str] | None = None,
        quorum: int | float | None = None,
        timeout: float = 30.0,
        on_event: Callable[[Event], Any] | None = None,
    ) -> DeployOutcome:
        """Deploy an earlier version again, named by (a unique start of) its hash; the
        side is found from the versions when not given."""
        if side is None:
            found = {v.side for v in (await self.protocol.versions(assignment)).versions
                     if v.code_hash.startswith(hash_prefix)}
            if len(found) != 1:
                raise RequestFailed(
                    f"{hash_prefix} is on both sides of assignment {assignment}; say which side"
                    " (on board or off board)"
                    if found else f"assignment {assignment} has no version {hash_prefix}… (see versions())",
                    "not_found" if not found else "refused",
                )
            side = found.pop()
        _side(side)
        return await self._deploy(assignment, side, on_event, code_hash=hash_prefix, vehicles=vehicles,
                                  quorum=quorum, timeout=timeout)

    async def _deploy(self, assignment: int, side: str, on_event: Callable[[Event], Any] | None,
                      vehicles: Sequence[str] | None, quorum: int | float | None, timeout: float,
                      **what: Any) -> DeployOutcome:
        if isinstance(quorum, float) and quorum > 1:
            quorum = int(quorum)
        events: list[Event] = []
        async for event in self.protocol.deploy(
            assignment=assignment, side=side, vehicles=list(vehicles) if vehicles else None, quorum=quorum,
            timeout=timeout, **what,
        ):
            events.append(event)
            if on_event is not None:
                outcome = on_event(event)
                if asyncio.iscoroutine(outcome):
                    await outcome
        return deploy_outcome(side, events)

    async def versions(self, assignment: int, *, as_frame: bool | None = None) -> Any:
        """Every deploy of the assignment's modules: side, hash, module, kind, by whom,
        when, the iterations it computed, the vehicles that run it, whether current."""
        reply = await self.versions_reply(assignment)
        return _table([shape(v) for v in reply.versions], as_frame)

    async def versions_reply(self, assignment: int) -> VersionsReply:
        """The versions message as it came (for `oodida versions`' table)."""
        return await self.protocol.versions(assignment)


def _side(side: str) -> None:
    if side not in ("on_board", "off_board"):
        raise SpecError(f"side {side!r}: write 'on_board' or 'off_board'")


def _assignment_row(a: AssignmentInfo) -> dict[str, Any]:
    row: dict[str, Any] = shape(a)
    row.pop("open", None)
    row["vehicles"] = list(a.vehicles)
    if a.open is not None:
        row.update(current_iteration=a.open.iteration, answered=a.open.answered, asked=a.open.asked,
                   deadline_in=a.open.deadline_in)
    return row


class AsyncAssignment:
    """A submitted assignment; every method is the client's, for this assignment."""

    def __init__(self, client: AsyncClient, assignment: int, vehicles: list[str], spec: AssignmentSpec | None):
        self.client = client
        self.id = assignment
        self.vehicles = vehicles
        self.spec = spec

    def __repr__(self) -> str:
        return f"<Assignment {self.id} on {len(self.vehicles)} vehicles>"

    def __int__(self) -> int:
        return self.id

    async def info(self) -> AssignmentInfo:
        return await self.client.info(self.id)

    async def state(self) -> str:
        return (await self.info()).state

    async def wait(self, progress: bool | None = None, **options: Any) -> Results:
        return await self.client.wait(self.id, progress=progress, **options)

    async def results(self, *, since: int = 0, iteration: int | None = None) -> Results:
        return await self.client.results(self.id, since=since, iteration=iteration)

    def follow(self, *, since: int = 0) -> AsyncIterator[Results]:
        return self.client.follow(self.id, since=since)

    async def cancel(self) -> str:
        return await self.client.cancel(self.id)

    async def deploy(self, module: str | os.PathLike[str] | ModuleSource, side: str = "on_board",
                     **options: Any) -> DeployOutcome:
        return await self.client.deploy(self.id, module, side, **options)

    async def rollback(self, hash_prefix: str, side: str | None = None, **options: Any) -> DeployOutcome:
        return await self.client.rollback(self.id, hash_prefix, side, **options)

    async def versions(self, *, as_frame: bool | None = None) -> Any:
        return await self.client.versions(self.id, as_frame=as_frame)


async def connect_async(credentials: str | os.PathLike[str] | None = None, **options: Any) -> AsyncClient:
    """`await oodida.connect_async()`: an `AsyncClient` (see `AsyncClient.connect`)."""
    return await AsyncClient.connect(credentials, **options)


__all__ = [
    "AsyncAssignment", "AsyncClient", "DeployOutcome", "SpecError", "build_spec", "connect_async", "read_module",
]
