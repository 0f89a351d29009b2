"""The versions of one running assignment's modules: who should run what, who does.

Active-code replacement on the server side, without I/O: a deploy sets the version
each targeted vehicle should run (`target`), the vehicles' acknowledgements say
which one each runs (`acked`), and an off-board deploy waits for the next iteration
boundary (`off_board_next`) so an iteration in flight finishes with the code it
started with. The runner asks this object what to send and what is in force; the
store keeps the history for `oodida versions`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from oodida.server.store import DeploymentRow
from oodida.wire.messages import LoadModule, ModuleAck, ModuleSource, VersionInfo


@dataclass(frozen=True, slots=True)
class Answer:
    """A vehicle's acknowledgement or refusal of a version, for a deploy's watchers."""

    vehicle: str
    ok: bool
    error: str | None


@dataclass(eq=False)
class Watch:
    """One deploy waiting for answers: every answer about `code_hash` from `vehicles`."""

    code_hash: str
    vehicles: frozenset[str]
    answers: asyncio.Queue[Answer] = field(default_factory=asyncio.Queue)


class AssignmentVersions:
    def __init__(self, vehicles: list[str]) -> None:
        self.vehicles = list(vehicles)
        self.sources: dict[str, ModuleSource] = {}
        # as last sent to the vehicles: one file may serve both sides with the same hash, and
        # its on-board copy carries the analyst's signature for the on-board side
        self.on_board_sources: dict[str, ModuleSource] = {}
        self.target: dict[str, str] = {}  # vehicle -> on-board version it should run
        self.acked: dict[str, str] = {}  # vehicle -> on-board version it last acknowledged
        self.off_board: str | None = None  # the off-board version in force
        self.off_board_next: str | None = None  # in force from the next iteration on
        self.migrate_next: str | None = None  # whose migrate(old_state) runs at the next boundary
        self.newest_first: list[str] = []  # every version, the latest deployed first
        self.watches: set[Watch] = set()
        self.changed: Callable[[], None] = lambda: None  # after a deploy: the runner saves the versions

    def snapshot(self) -> dict[str, Any]:
        """What a restarted server needs to restore these versions. Sources are kept by
        hash in the store, acknowledgements in its module_acks (written as they come),
        watches belong to deploys, which end with the server. Small whatever the
        fleet's size while most vehicles run the same version: it is written at every
        iteration boundary."""
        return {
            "target": compact_map(self.target, self.vehicles),
            "off_board": self.off_board,
            "off_board_next": self.off_board_next,
            "migrate_next": self.migrate_next,
            "newest_first": list(self.newest_first),
            "on_board": sorted(self.on_board_sources),  # sent to vehicles, with its on-board signature
        }

    @classmethod
    def restore(
        cls,
        vehicles: list[str],
        data: dict[str, Any],
        source: Callable[[str, str], ModuleSource | None],
        acked: dict[str, str],
    ) -> AssignmentVersions:
        """The versions from a `snapshot()`; `source(hash, side)` finds a stored version
        as it is sent to that side (with the signature it was deployed there with),
        `acked` is each vehicle's latest acknowledged on-board version. Raises
        ValueError naming what is missing or malformed."""
        versions = cls(vehicles)
        try:
            on_board = set(data["on_board"])
            for code_hash in reversed(data["newest_first"]):
                module = source(code_hash, "off_board")
                if module is None:
                    raise ValueError(f"version {code_hash} is not in the module registry")
                versions._remember(code_hash, module)
                if code_hash in on_board:
                    versions.on_board_sources[code_hash] = source(code_hash, "on_board") or module
            versions.target = expand_map(data["target"], vehicles)
            versions.acked = {v: h for v, h in acked.items() if v in set(vehicles)}
            versions.off_board = data["off_board"]
            versions.off_board_next = data["off_board_next"]
            versions.migrate_next = data["migrate_next"]
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"the saved versions are malformed ({type(exc).__name__}: {exc})") from None
        named = set(versions.target.values()) | {versions.off_board, versions.off_board_next, versions.migrate_next}
        unknown = sorted(
            {h for h in named if h is not None and h not in versions.sources}
            | {h for h in versions.target.values() if h not in versions.on_board_sources}
        )
        if unknown:
            raise ValueError(f"the saved versions name unknown versions: {', '.join(unknown)}")
        return versions

    def _remember(self, code_hash: str, module: ModuleSource) -> None:
        self.sources[code_hash] = module
        if code_hash in self.newest_first:
            self.newest_first.remove(code_hash)
        self.newest_first.insert(0, code_hash)

    # --- deploys ------------------------------------------------------------------

    def deploy_on_board(
        self, code_hash: str, module: ModuleSource, vehicles: list[str] | None, *, migrates: bool = False
    ) -> list[str]:
        """Make `code_hash` the version `vehicles` (default: all) should run; the vehicles
        to send it to. With `migrates` and every vehicle targeted, the module's
        migrate(old_state) is due at the next iteration boundary."""
        self._remember(code_hash, module)
        self.on_board_sources[code_hash] = module
        targets = self.vehicles if vehicles is None else vehicles
        for vehicle in targets:
            self.target[vehicle] = code_hash
        if migrates and vehicles is None:
            self.migrate_next = code_hash
        self.changed()
        return list(targets)

    def deploy_off_board(self, code_hash: str, module: ModuleSource, *, initial: bool = False) -> None:
        """The off-board version from the next iteration on (at once for the first one)."""
        self._remember(code_hash, module)
        if initial:
            self.off_board = code_hash
        else:
            self.off_board_next = code_hash
        self.changed()

    def load_message(self, assignment: int, vehicle: str) -> LoadModule | None:
        """What a vehicle must load to run its target version; None for a built-in
        assignment. Sent on deploy and whenever the vehicle (re)connects."""
        code_hash = self.target.get(vehicle)
        if code_hash is None:
            return None
        return LoadModule(assignment=assignment, code_hash=code_hash, module=self.on_board_sources[code_hash])

    def watch(self, code_hash: str, vehicles: list[str]) -> Watch:
        w = Watch(code_hash, frozenset(vehicles))
        self.watches.add(w)
        return w

    def unwatch(self, watch: Watch) -> None:
        self.watches.discard(watch)

    # --- answers -------------------------------------------------------------------

    def on_ack(self, vehicle: str, ack: ModuleAck) -> None:
        if ack.ok:
            self.acked[vehicle] = ack.code_hash
        for w in self.watches:
            if w.code_hash == ack.code_hash and vehicle in w.vehicles:
                w.answers.put_nowait(Answer(vehicle, ack.ok, ack.error))

    def answer_from_server(self, code_hash: str, ok: bool, error: str | None) -> None:
        """The server's own load of an off-board version, as an answer for watchers."""
        for w in self.watches:
            if w.code_hash == code_hash:
                w.answers.put_nowait(Answer("server", ok, error))


def compact_map(mapping: Mapping[str, str | None], vehicles: list[str]) -> dict[str, str | None]:
    """vehicle -> hash for every vehicle (absent: None), as the most common hash under
    "*" and only the vehicles that differ from it: a fleet that runs one version is
    one entry, not one per vehicle."""
    values = [mapping.get(v) for v in vehicles]
    common = Counter(values).most_common(1)[0][0] if values else None
    out: dict[str, str | None] = {"*": common}
    out.update({v: h for v, h in zip(vehicles, values, strict=True) if h != common})
    return out


def expand_map(compact: dict[str, str | None], vehicles: list[str]) -> dict[str, str]:
    """The mapping `compact_map` compacted, without the vehicles that had none.
    Raises ValueError for anything but a dict of hashes."""
    if not isinstance(compact, dict) or "*" not in compact:
        raise ValueError(f"not a compacted version map: {str(compact)[:80]}")
    if not all(h is None or isinstance(h, str) for h in compact.values()):
        raise ValueError("a compacted version map holds something other than hashes")
    out = {v: compact.get(v, compact["*"]) for v in vehicles}
    return {v: h for v, h in out.items() if h is not None}


def version_table(
    deployments: list[DeploymentRow],
    acks: dict[tuple[str, str], list[str]],
    served: dict[tuple[str, str], list[int]],
    vehicles: list[str],
    signers: dict[int, str] | None = None,
) -> list[VersionInfo]:
    """`oodida versions`: every deploy of an assignment, oldest first, with who runs
    it and which iterations it served. A version is current when, replaying the
    deploys in order, it is the last one some vehicle (or, off board, the server)
    was asked to run. `signers`: deploy id -> key id, for the signed ones."""
    on_board: dict[str, int] = {}  # vehicle -> id of the deploy it should run
    off_board: int | None = None
    for d in deployments:
        if d.side == "on_board":
            for vehicle in vehicles if d.vehicles is None else d.vehicles:
                on_board[vehicle] = d.id
        else:
            off_board = d.id
    current = set(on_board.values()) | ({off_board} if off_board is not None else set())
    return [
        VersionInfo(
            side=d.side,  # type: ignore[arg-type]
            code_hash=d.code_hash,
            name=d.name[:128],
            kind=d.kind,  # type: ignore[arg-type]
            by=d.by,
            at=d.at,
            vehicles=d.vehicles,
            acked=acks.get((d.side, d.code_hash), []),
            iterations=served.get((d.side, d.code_hash), []),
            current=d.id in current,
            signer=(signers or {}).get(d.id),
        )
        for d in deployments
    ]
