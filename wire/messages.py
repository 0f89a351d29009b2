"""Every message of the protocol, as typed, validated structs.

A message is a CBOR map whose `type` names it. msgspec checks every field of every
incoming message against these declarations (type, range, length, pattern) and
`__post_init__` checks the free-form values (results, parameters, state) with
`check_value`, so the rest of the system only ever sees well-formed messages.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from oodida.wire.states import AssignmentState, SourcePhase
from oodida.wire.values import check_value

PROTOCOL_VERSION = 1
# The code hash a result computed by a built-in method carries (a module's is its sha256):
# the agent sets it, the server's vote and the analysts' rows read it.
BUILTIN_CODE_HASH = "builtin:0.1"

# Field types with their limits. Identities and signal names are restricted so they
# are safe in logs, file names and SQL (we use parameters anyway) and short.
# `\Z`, not `$`: msgspec uses re.search, and `$` also matches before a final newline.
Identity = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}\Z")]
SignalName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.]{0,127}\Z")]
MethodName = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,31}\Z")]
AssignmentId = Annotated[int, Meta(ge=1, le=2**53)]
IterationNo = Annotated[int, Meta(ge=1, le=10**9)]
RequestId = Annotated[int, Meta(ge=0, le=2**53)]
Count = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Seconds = Annotated[float, Meta(ge=0, le=10**7)]
Text = Annotated[str, Meta(max_length=4096)]
CodeHash = Annotated[str, Meta(max_length=128)]
SHA256 = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}\Z")]
HashPrefix = Annotated[str, Meta(pattern=r"^[0-9a-f]{4,64}\Z")]
Timestamp = Annotated[float, Meta(ge=-1e12, le=1e12)]
KeyId = Annotated[str, Meta(pattern=r"^[0-9a-f]{16}\Z")]  # an analyst's signing key (oodida.core.signing.key_id)
Signature = Annotated[bytes, Meta(min_length=64, max_length=64)]  # ed25519
# Every integer a peer sends has an upper bound: an unbounded one let a hello carry a
# 5,000-digit version, which the server could not even format for its refusal (Python
# refuses int-to-str past 4,300 digits) -- found by the session fuzzer.
Version = Annotated[int, Meta(ge=0, le=2**31)]
Pid = Annotated[int, Meta(ge=0, le=2**31)]
# a signal's unit as the DBC writes it (`km/h`, `deg`): results carry it to the analyst
Unit = Annotated[str, Meta(max_length=32)]
Units = Annotated[dict[SignalName, Unit], Meta(max_length=64)]

MAX_SIGNALS = 64
MAX_METHODS = 16
MAX_VEHICLES = 100_000


class Role(enum.StrEnum):
    VEHICLE = "vehicle"
    ANALYST = "analyst"
    READER = "reader"  # an analyst who may only read: status, results, versions


class ErrorCode(enum.StrEnum):
    BAD_MESSAGE = "bad_message"  # did not decode or did not validate
    UNEXPECTED = "unexpected"  # valid message, but not allowed now or for this role
    AUTH = "auth"  # handshake refused
    VERSION = "version"  # protocol versions do not match
    NOT_FOUND = "not_found"  # no such assignment
    REFUSED = "refused"  # a request that cannot be carried out (reason says why)
    INTERNAL = "internal"  # our fault; the reason says what failed
    DUPLICATE = "duplicate"  # this vehicle id is connected on another connection (refused, or replaced by it)


class Message(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    """Base of every message; `type` on the wire is the subclass's tag. Subclasses say
    `frozen=True` again: msgspec inherits it, mypy's reading of a dataclass transform
    does not, and would call every message mutable."""


# --- handshake ---------------------------------------------------------------


# Challenge-response (SCRAM-SHA-256 logic, wire/scram.py): hello -> challenge ->
# proof -> welcome. No secret ever crosses the wire, and the server's fresh nonce
# makes a recorded handshake worthless.

Nonce = Annotated[bytes, Meta(min_length=16, max_length=64)]


class Hello(Message, tag="hello", frozen=True):
    version: Version
    role: Role
    identity: Identity
    nonce: Nonce  # the client's half of the handshake's nonce
    software: Annotated[str, Meta(max_length=64)] = ""


class Challenge(Message, tag="challenge", frozen=True):
    """The server's answer to a hello whose identity holds a credential of its role:
    the combined nonce (the client's, then the server's) and how to salt the secret."""

    nonce: Annotated[bytes, Meta(min_length=32, max_length=128)]
    salt: Annotated[bytes, Meta(min_length=8, max_length=64)]
    iterations: Annotated[int, Meta(ge=4096, le=1_000_000)]


class Proof(Message, tag="proof", frozen=True):
    """ClientProof: the client key XOR the client signature over the AuthMessage."""

    proof: Annotated[bytes, Meta(min_length=32, max_length=32)]


class Welcome(Message, tag="welcome", frozen=True):
    version: Version
    session: Annotated[str, Meta(max_length=64)]
    server: Annotated[str, Meta(max_length=64)] = ""
    signature: Annotated[bytes, Meta(max_length=64)] = b""  # ServerSignature; the client checks it


class Error(Message, tag="error", frozen=True):
    reason: Text
    code: ErrorCode = ErrorCode.BAD_MESSAGE
    id: RequestId | None = None


# --- assignments --------------------------------------------------------------


class WindowSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How much data one iteration takes from each vehicle.

    `next`: the next `amount` seconds (signal time) or samples after the task arrives.
    `latest`: the last `amount` seconds or samples already buffered.
    `first`: the first `amount` seconds or samples the agent recorded since it started,
    once they are in: the same data whenever the task arrives (a replayed drive gives
    the same answers however late, or how often restarted, an agent answers).
    """

    amount: Annotated[float, Meta(gt=0, le=10**9)]
    unit: Literal["s", "samples"] = "s"
    kind: Literal["next", "latest", "first"] = "next"

    def __post_init__(self) -> None:
        if self.unit == "samples" and self.amount != int(self.amount):
            raise ValueError(f"a window of samples needs a whole number, got {self.amount}")


MAX_MODULE_BYTES = 256 * 1024


class ModuleSource(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An analyst's module as sent: its file name (for messages) and its text. It is
    checked under the sandbox policy by the server and again by every agent."""

    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")]
    source: Annotated[str, Meta(max_length=MAX_MODULE_BYTES)]
    # the analyst's ed25519 signature over its content hash and side, and the key's id
    # (oodida.core.signing); it travels with the module wherever it goes (submit, deploy,
    # LoadModule), so agents that require signatures can check it themselves
    signature: Signature | None = None
    signer: KeyId | None = None

    def __post_init__(self) -> None:
        if (self.signature is None) != (self.signer is None):
            raise ValueError("a signed module carries both its signature and its signer's key id")


class AssignmentSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What an analyst asks for. Checked by the server before anything runs."""

    signals: Annotated[list[SignalName], Meta(min_length=1, max_length=MAX_SIGNALS)]
    window: WindowSpec
    # ids, a count (the first N connected vehicles by id), or None for all connected
    vehicles: Annotated[list[Identity], Meta(min_length=1, max_length=MAX_VEHICLES)] | Annotated[
        int, Meta(ge=1, le=MAX_VEHICLES)
    ] | None = None
    iterations: Annotated[int, Meta(ge=0, le=10**6)] = 1  # 0 = until cancelled
    on_board: Annotated[list[MethodName], Meta(max_length=MAX_METHODS)] = msgspec.field(
        default_factory=lambda: ["count"]
    )
    off_board: Literal["fleet", "none"] = "fleet"
    # an analyst's module instead of the built-ins: `on_board(window, params, state)`
    # on every vehicle, `off_board(results, params, state)` on the server
    on_board_module: ModuleSource | None = None
    off_board_module: ModuleSource | None = None
    params: dict[Annotated[str, Meta(max_length=64)], Any] = msgspec.field(default_factory=dict)
    # answers that close an iteration: a count, a fraction of the selected vehicles, or all
    quorum: Annotated[int, Meta(ge=1, le=MAX_VEHICLES)] | Annotated[float, Meta(gt=0, le=1)] | None = None
    deadline: Annotated[float, Meta(gt=0, le=86_400)] = 60.0  # seconds per iteration
    name: Annotated[str, Meta(max_length=128)] = ""

    def __post_init__(self) -> None:
        check_value(self.params, max_depth=8, max_items=100_000)
        if isinstance(self.vehicles, list) and len(set(self.vehicles)) != len(self.vehicles):
            raise ValueError("vehicles lists a vehicle twice")
        if len(set(self.signals)) != len(self.signals):
            raise ValueError("signals lists a signal twice")
        if not self.on_board and self.on_board_module is None:
            raise ValueError("no on-board method: name built-ins in on_board or give an on_board_module")

    @property
    def methods(self) -> list[str]:
        """The built-in on-board methods, or none when a module computes on board."""
        return [] if self.on_board_module is not None else self.on_board


# --- server <-> vehicle ---------------------------------------------------------


class Task(Message, tag="task", frozen=True):
    """One iteration's work for one vehicle; `state` is what the previous iteration's
    off-board step produced for the vehicles (for example k-means centroids).

    A module assignment's task names no code: the vehicle runs the newest version of
    the assignment's on-board module that it has acknowledged (`LoadModule`) when the
    task arrives. `module_hash` is the version the server asked this vehicle to run,
    for logs and for a vehicle that has none yet to say so."""

    assignment: AssignmentId
    iteration: IterationNo
    signals: Annotated[list[SignalName], Meta(min_length=1, max_length=MAX_SIGNALS)]
    window: WindowSpec
    methods: Annotated[list[MethodName], Meta(max_length=MAX_METHODS)]
    params: dict[Annotated[str, Meta(max_length=64)], Any]
    deadline: Annotated[float, Meta(gt=0, le=86_400)]
    state: Any = None
    module_hash: CodeHash | None = None  # when set, the assignment's module computes instead of `methods`

    def __post_init__(self) -> None:
        check_value(self.params, max_depth=8, max_items=100_000)
        check_value(self.state)
        if not self.methods and self.module_hash is None:
            raise ValueError("a task needs built-in methods or a module")


ModuleSide = Literal["on_board", "off_board"]


class LoadModule(Message, tag="load_module", frozen=True):
    """A version of an assignment's on-board module for a vehicle to check, load into
    its sandbox worker and acknowledge (`ModuleAck`). Sent at submit, on every deploy
    or rollback, and again to a vehicle that reconnects; loading a version the vehicle
    already holds is a no-op that acknowledges again. The analyst's signature, when
    there is one, is in `module` (`ModuleSource.signature`, `signer`): vehicles that
    require signatures check it over the source they receive."""

    assignment: AssignmentId
    code_hash: SHA256
    module: ModuleSource


class ModuleAck(Message, tag="module_ack", frozen=True):
    """A vehicle's answer to `LoadModule`: it runs `code_hash` from its next iteration
    on (ok), or it refused it and keeps its previous version (`error` says why)."""

    assignment: AssignmentId
    code_hash: SHA256
    ok: bool
    error: Text | None = None
    elapsed: Seconds = 0.0  # from receiving the module to the answer, on the vehicle

    def __post_init__(self) -> None:
        if self.ok == (self.error is not None):
            raise ValueError("a module acknowledgement is ok, or carries an error, not both")


class CancelTask(Message, tag="cancel_task", frozen=True):
    assignment: AssignmentId


class Result(Message, tag="result", frozen=True):
    """A vehicle's answer for one (assignment, iteration); the key makes it idempotent."""

    assignment: AssignmentId
    iteration: IterationNo
    vehicle: Identity
    ok: bool
    code_hash: CodeHash
    value: Any = None
    error: Text | None = None
    samples: dict[SignalName, Count] = msgspec.field(default_factory=dict)
    t_start: Timestamp | None = None
    t_end: Timestamp | None = None
    elapsed: Seconds = 0.0
    flags: Annotated[list[Annotated[str, Meta(max_length=256)]], Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )  # e.g. NaN or infinity found in a module's value, with where
    units: Units = msgspec.field(default_factory=dict)  # per signal of the window, from the DBC (absent: none)

    def __post_init__(self) -> None:
        check_value(self.value)
        if self.ok and self.error is not None:
            raise ValueError("a result cannot be ok and carry an error")
        if not self.ok and not self.error:
            raise ValueError("a failed result must say why (error)")


class ResultAck(Message, tag="result_ack", frozen=True):
    assignment: AssignmentId
    iteration: IterationNo


class SourceState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(max_length=256)]
    state: SourcePhase
    frames: Count = 0
    error: Text | None = None


class SandboxInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A process's sandbox worker, so operators (and tests) can see that a deploy
    loaded code into the running worker and did not start a new one."""

    pid: Annotated[int, Meta(ge=1, le=2**31)] | None  # None: no worker running now
    started: Count  # workers started so far (the first, and every replacement)
    restarts: Count  # replaced after a timeout or a crash
    recycles: Count  # retired near their CPU budget or for a bigger arena
    modules: Count  # module versions loaded


class Position(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A vehicle's newest GPS fix (WGS 84 degrees) and the signal time it was taken,
    so a fleet can be drawn where it is."""

    latitude: Annotated[float, Meta(ge=-90, le=90)]
    longitude: Annotated[float, Meta(ge=-180, le=180)]
    time: Timestamp


class VehicleStatus(Message, tag="vehicle_status", frozen=True):
    """Sent by an agent on connect and periodically: what it reads and how it goes."""

    frames: Count
    unknown_frames: Count
    malformed_frames: Count
    signal_time: Timestamp | None
    sources: Annotated[list[SourceState], Meta(max_length=64)]
    signals: Annotated[list[SignalName], Meta(max_length=10_000)]
    error_frames: Count = 0  # error frames the buses reported: counted, never decoded
    remote_frames: Count = 0  # remote-request frames: no data to decode
    unreadable_lines: Count = 0  # lines of replayed logs that could not be read, skipped
    late_samples: Count = 0  # samples stamped before the newest one held (a clock stepping back), dropped
    position: Position | None = None  # the newest GPS fix, where a GPS source reports one
    running: Annotated[int, Meta(ge=0, le=10_000)] = 0
    pending_results: Count = 0
    outbox_dropped: Count = 0  # results the agent's outbox dropped over its limits, ever
    outbox_error: Annotated[str, Meta(max_length=512)] | None = None  # why results wait in memory, not on disk
    pid: Pid = 0
    sandbox: SandboxInfo | None = None
    modules: dict[Annotated[str, Meta(max_length=24)], SHA256] = msgspec.field(
        default_factory=dict
    )  # assignment (as text) -> the on-board version it runs


Rate = Annotated[float, Meta(ge=0, le=1e7)]  # samples per second of signal time
Bound = Annotated[float, Meta(ge=-1e300, le=1e300)]  # finite: NaN fails both bounds


class SignalInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One signal a vehicle can serve: its name as analysts ask for it (`MESSAGE.SIGNAL`
    for a DBC signal), its unit and range from the DBC (None where the DBC says none),
    and the rate this vehicle measures (None until two samples came in)."""

    name: SignalName
    unit: Unit = ""
    minimum: Bound | None = None
    maximum: Bound | None = None
    rate: Rate | None = None
    samples: Count = 0  # held in the vehicle's buffer now

    def __post_init__(self) -> None:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"signal {self.name}: minimum {self.minimum} above maximum {self.maximum}")


MAX_CATALOGUE = 10_000


class SignalCatalogue(Message, tag="signal_catalogue", frozen=True):
    """Every signal a vehicle can serve. Sent by the agent after its first status and
    again when a rate or the set of signals changed, not with every status: a DBC's
    few hundred signals would make each status tens of kilobytes."""

    signals: Annotated[list[SignalInfo], Meta(max_length=MAX_CATALOGUE)]

    def __post_init__(self) -> None:
        if len({s.name for s in self.signals}) != len(self.signals):
            raise ValueError("the catalogue lists a signal twice")


# --- server <-> analyst ----------------------------------------------------------


class Submit(Message, tag="submit", frozen=True):
    id: RequestId
    spec: AssignmentSpec


class Submitted(Message, tag="submitted", frozen=True):
    id: RequestId
    assignment: AssignmentId
    vehicles: list[Identity]


class StatusRequest(Message, tag="status", frozen=True):
    id: RequestId


class VehicleInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    vehicle: Identity
    connected_at: Timestamp
    address: Annotated[str, Meta(max_length=128)]
    status: VehicleStatus | None = None


class OpenIterationInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The iteration a running assignment waits on, for progress bars: "iteration 2
    of 4: 3 of 5 answered, 12 s to the deadline"."""

    iteration: IterationNo
    answered: Count
    asked: Count
    quorum: Count
    deadline_in: Seconds  # seconds left until the deadline closes it


class AssignmentInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    assignment: AssignmentId
    name: Annotated[str, Meta(max_length=128)]
    state: AssignmentState
    iterations: Annotated[int, Meta(ge=0)]
    completed: Annotated[int, Meta(ge=0)]
    vehicles: list[Identity]
    created: Timestamp
    reason: Text | None = None
    partial: Count = 0  # closed iterations that were partial (some answers missing past the deadline)
    failed: Count = 0  # closed iterations that failed
    open: OpenIterationInfo | None = None  # running assignments: the iteration under way


class StatusReply(Message, tag="status_reply", frozen=True):
    id: RequestId
    server_time: Timestamp
    vehicles: list[VehicleInfo]
    assignments: list[AssignmentInfo]
    pid: Pid = 0
    sandbox: SandboxInfo | None = None


class ResultsRequest(Message, tag="results", frozen=True):
    id: RequestId
    assignment: AssignmentId
    follow: bool = False
    since: Annotated[int, Meta(ge=0, le=10**9)] = 0  # iterations after this one


class VehicleReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ok: bool
    code_hash: CodeHash
    value: Any = None  # readable per-vehicle value (the method's summary)
    error: Text | None = None
    samples: dict[SignalName, Count] = msgspec.field(default_factory=dict)
    late: bool = False
    flags: list[str] = msgspec.field(default_factory=list)
    # the window the value was computed on, in signal time, and each signal's unit
    t_start: Timestamp | None = None
    t_end: Timestamp | None = None
    units: Units = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_value(self.value)


class IterationReport(Message, tag="iteration", frozen=True):
    """One closed iteration as the analyst sees it.

    `code_hash` is the on-board version the iteration's majority of answering vehicles
    ran, the one whose results were aggregated; `set_aside` the vehicles that ran
    another version, with it (their results are stored and shown, never aggregated).
    `off_board_hash` is the off-board module's version, when there is one."""

    id: RequestId
    assignment: AssignmentId
    iteration: IterationNo
    iterations: Annotated[int, Meta(ge=0)]
    status: Literal["complete", "quorum", "partial", "failed", "cancelled"]
    vehicles: dict[Identity, VehicleReport]
    missing: list[Identity]
    started: Timestamp
    closed: Timestamp
    fleet: Any = None
    reason: Text | None = None
    code_hash: CodeHash | None = None
    off_board_hash: CodeHash | None = None
    set_aside: dict[Identity, CodeHash] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_value(self.fleet)


class ResultsEnd(Message, tag="results_end", frozen=True):
    id: RequestId
    assignment: AssignmentId
    state: AssignmentState
    reason: Text | None = None


class Cancel(Message, tag="cancel", frozen=True):
    id: RequestId
    assignment: AssignmentId


class Cancelled(Message, tag="cancelled", frozen=True):
    id: RequestId
    assignment: AssignmentId
    state: AssignmentState


class SignalsRequest(Message, tag="signals", frozen=True):
    """The signal catalogue: of one vehicle, or of every vehicle that reported one."""

    id: RequestId
    vehicle: Identity | None = None


class VehicleSignals(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    vehicle: Identity
    connected: bool  # the catalogue is the last one a vehicle sent, kept after it left
    reported: Timestamp  # server time the catalogue arrived
    signals: list[SignalInfo]


class SignalsReply(Message, tag="signals_reply", frozen=True):
    id: RequestId
    vehicles: list[VehicleSignals]


class Deploy(Message, tag="deploy", frozen=True):
    """Replace the module of a running assignment on one side: a new `module`, or an
    earlier version by `code_hash` (a rollback; a unique prefix of the hash will do).

    On board, the server answers `Deploying` with the vehicles it sends the module to,
    then `DeployProgress` with the vehicles' answers as they arrive, then
    `DeployEnd` once `quorum` of them run it (all by default), or at `timeout`.
    Off board, the server loads the module into its own sandbox and answers
    `Deploying` and `DeployEnd` at once."""

    id: RequestId
    assignment: AssignmentId
    side: ModuleSide
    module: ModuleSource | None = None
    code_hash: HashPrefix | None = None
    vehicles: Annotated[list[Identity], Meta(min_length=1, max_length=MAX_VEHICLES)] | None = None  # None: all
    quorum: Annotated[int, Meta(ge=1, le=MAX_VEHICLES)] | Annotated[float, Meta(gt=0, le=1)] | None = None
    timeout: Annotated[float, Meta(gt=0, le=3600)] = 30.0

    def __post_init__(self) -> None:
        if (self.module is None) == (self.code_hash is None):
            raise ValueError("a deploy carries a module or names an earlier version by code_hash, one of the two")
        if isinstance(self.vehicles, list) and len(set(self.vehicles)) != len(self.vehicles):
            raise ValueError("vehicles lists a vehicle twice")


class Deploying(Message, tag="deploying", frozen=True):
    """The server accepted a deploy: the version's full hash, whether it is a rollback,
    and who was asked to load it (`offline`: they get it when they reconnect)."""

    id: RequestId
    assignment: AssignmentId
    side: ModuleSide
    code_hash: SHA256
    name: Annotated[str, Meta(max_length=128)]
    rollback: bool
    vehicles: list[Identity]
    offline: list[Identity]


class DeployAnswer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One vehicle (or, off board, the server) acknowledged or refused the version."""

    vehicle: Identity
    ok: bool
    error: Text | None = None
    elapsed: Seconds = 0.0  # since the server accepted the deploy


class DeployProgress(Message, tag="deploy_progress", frozen=True):
    """The answers that arrived since the last progress message, in arrival order
    (one message for all that came together: a fleet answers in bursts)."""

    id: RequestId
    answers: Annotated[list[DeployAnswer], Meta(min_length=1, max_length=MAX_VEHICLES)]


class DeployEnd(Message, tag="deploy_end", frozen=True):
    id: RequestId
    assignment: AssignmentId
    code_hash: SHA256
    acked: list[Identity]
    refused: dict[Identity, Text]
    waiting: list[Identity]  # asked, no answer yet (offline, or slower than the quorum)
    elapsed: Seconds
    complete: bool  # the quorum was reached (False: timed out)


class VersionsRequest(Message, tag="versions", frozen=True):
    id: RequestId
    assignment: AssignmentId


class VersionInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One deploy of a module version (a version deployed twice appears twice)."""

    side: ModuleSide
    code_hash: SHA256
    name: Annotated[str, Meta(max_length=128)]
    kind: Literal["submit", "deploy", "rollback"]
    by: Identity
    at: Timestamp
    vehicles: list[Identity] | None  # None: all of the assignment's vehicles
    acked: list[Identity]  # vehicles that acknowledged this version (ever)
    iterations: list[int]  # iterations this version computed (aggregated results)
    current: bool  # the version the assignment's vehicles (or server) are asked to run
    signer: KeyId | None = None  # the key that signed the module this deploy sent


class VersionsReply(Message, tag="versions_reply", frozen=True):
    id: RequestId
    assignment: AssignmentId
    versions: list[VersionInfo]


AnyMessage = (
    Hello
    | Challenge
    | Proof
    | Welcome
    | Error
    | Task
    | CancelTask
    | Result
    | ResultAck
    | VehicleStatus
    | SignalCatalogue
    | Submit
    | Submitted
    | StatusRequest
    | StatusReply
    | ResultsRequest
    | IterationReport
    | ResultsEnd
    | Cancel
    | Cancelled
    | LoadModule
    | ModuleAck
    | Deploy
    | Deploying
    | DeployProgress
    | DeployEnd
    | VersionsRequest
    | VersionsReply
    | SignalsRequest
    | SignalsReply
)

MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.__struct_config__.tag: cls for cls in AnyMessage.__args__
}
