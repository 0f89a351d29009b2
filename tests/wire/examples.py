"""The table every wire test draws on: one valid example (or more) of every message
type, who receives it, and helpers that bring a `Connection` into the right state by
doing the real handshake (never by poking at its attributes)."""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass
from typing import Any

import cbor2

from oodida.wire.codec import encode_payload
from oodida.wire.connection import NEED_DATA, Connection, Side, State
from oodida.wire.framing import encode_frame
from oodida.wire.messages import (
    AssignmentInfo,
    AssignmentSpec,
    Cancel,
    Cancelled,
    CancelTask,
    Challenge,
    Deploy,
    DeployAnswer,
    DeployEnd,
    Deploying,
    DeployProgress,
    Error,
    ErrorCode,
    Hello,
    IterationReport,
    LoadModule,
    Message,
    ModuleAck,
    ModuleSource,
    Proof,
    Result,
    ResultAck,
    ResultsEnd,
    ResultsRequest,
    Role,
    SandboxInfo,
    SignalCatalogue,
    SignalInfo,
    SignalsReply,
    SignalsRequest,
    SourceState,
    StatusReply,
    StatusRequest,
    Submit,
    Submitted,
    Task,
    VehicleInfo,
    VehicleReport,
    VehicleSignals,
    VehicleStatus,
    VersionInfo,
    VersionsReply,
    VersionsRequest,
    Welcome,
    WindowSpec,
)
from oodida.wire.states import HandshakeState
from oodida.wire.values import NDArray

T0 = 1_700_000_000.5  # exactly representable, like every float below


def f8(*xs: float) -> bytes:
    return struct.pack(f"<{len(xs)}d", *xs)


def f4(*xs: float) -> bytes:
    return struct.pack(f"<{len(xs)}f", *xs)


# Arrays of several dtypes and shapes: 1-D, 2-D, 3-D, 0-d, empty 1-D, empty 2-D.
ARRAYS = {
    "f8_2d": NDArray("<f8", (3, 2), f8(1.0, 2.0, 3.5, -4.0, 0.0, 1e300)),
    "f4_1d": NDArray("<f4", (4,), f4(0.5, -1.5, float("inf"), float("-inf"))),
    "f2_1d": NDArray("<f2", (2,), struct.pack("<2e", 1.0, -2.0)),
    "i8_0d": NDArray("<i8", (), struct.pack("<q", -(2**62))),
    "u1_3d": NDArray("|u1", (2, 2, 2), bytes(range(8))),
    "i1_1d": NDArray("|i1", (3,), struct.pack("<3b", -128, 0, 127)),
    "u2_empty": NDArray("<u2", (0,), b""),
    "i4_empty_2d": NDArray("<i4", (0, 5), b""),
    "u4_2d": NDArray("<u4", (1, 3), struct.pack("<3I", 0, 1, 2**32 - 1)),
    "u8_1d": NDArray("<u8", (1,), struct.pack("<Q", 2**64 - 1)),
    "i2_2d": NDArray("<i2", (2, 1), struct.pack("<2h", -1, 1)),
}

H1 = "0123456789abcdef" * 4
H2 = "fedcba9876543210" * 4
MODULE = ModuleSource(name="speeding.py", source="def on_board(window, params, state):\n    return 1\n")

STATUS = VehicleStatus(
    frames=123_456,
    unknown_frames=7,
    malformed_frames=0,
    signal_time=T0,
    sources=[
        SourceState(name="can0", state="running", frames=123_000),
        SourceState(name="replay:/data/drive.log", state="failed", frames=0, error="file vanished"),
    ],
    signals=["SPEED.SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE", "_private"],
    running=2,
    pending_results=1,
    outbox_dropped=3,
)


class Receiver(enum.Enum):
    """Which end receives a message, in which state."""

    SERVER_HANDSHAKE = "server before hello"
    SERVER_CHALLENGED = "server after its challenge"
    CLIENT_HANDSHAKE = "vehicle client after hello"
    CLIENT_PROVED = "vehicle client after its proof"
    SERVER_OF_VEHICLE = "server talking to a vehicle"
    SERVER_OF_ANALYST = "server talking to an analyst"
    VEHICLE = "vehicle client, ready"
    ANALYST = "analyst client, ready"


NONCE = b"\x01" * 24


@dataclass(frozen=True)
class Example:
    id: str
    message: Message
    receiver: Receiver


EXAMPLES: list[Example] = [
    Example(
        "hello",
        Hello(version=1, role=Role.VEHICLE, identity="vehicle-007", nonce=NONCE, software="oodida-agent 0.1"),
        Receiver.SERVER_HANDSHAKE,
    ),
    Example(
        "challenge",
        Challenge(nonce=NONCE + b"\x02" * 24, salt=b"\x03" * 16, iterations=4096),
        Receiver.CLIENT_HANDSHAKE,
    ),
    Example("proof", Proof(proof=b"\x04" * 32), Receiver.SERVER_CHALLENGED),
    Example(
        "welcome", Welcome(version=1, session="sess-1", server="test-server", signature=b"\x05" * 32),
        Receiver.CLIENT_PROVED,
    ),
    Example("error", Error(reason="no such assignment", code=ErrorCode.NOT_FOUND, id=42), Receiver.SERVER_OF_VEHICLE),
    Example("error-defaults", Error(reason="bad"), Receiver.ANALYST),
    Example(
        "task",
        Task(
            assignment=3,
            iteration=2,
            signals=["SPEED.SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE"],
            window=WindowSpec(amount=30.0, unit="s", kind="next"),
            methods=["mean", "kmeans"],
            params={"k": 3, "tol": 1e-4, "labels": ["a", "b"], "nested": {"x": None, "y": True}},
            deadline=60.0,
            state={"centroids": ARRAYS["f8_2d"], "round": 1},
        ),
        Receiver.VEHICLE,
    ),
    Example(
        "task-no-state",
        Task(
            assignment=2**53,
            iteration=10**9,
            signals=["A"],
            window=WindowSpec(amount=100.0, unit="samples", kind="latest"),
            methods=["count"],
            params={},
            deadline=86_400.0,
        ),
        Receiver.VEHICLE,
    ),
    Example("cancel_task", CancelTask(assignment=3), Receiver.VEHICLE),
    Example(
        "result",
        Result(
            assignment=3,
            iteration=2,
            vehicle="vehicle-007",
            ok=True,
            code_hash="sha256:0123abcd",
            value={"arrays": dict(ARRAYS), "count": 10, "raw": b"\x00\xff", "list": [1, -2.5, "x", None, False]},
            samples={"SPEED.SPEED": 300, "STEER_ANGLE_SENSOR.STEER_ANGLE": 0},
            t_start=T0,
            t_end=T0 + 30.0,
            elapsed=0.25,
        ),
        Receiver.SERVER_OF_VEHICLE,
    ),
    Example(
        "result-failed",
        Result(assignment=3, iteration=1, vehicle="v2", ok=False, code_hash="h", error="signal SPEED.SPEED missing"),
        Receiver.SERVER_OF_VEHICLE,
    ),
    Example(
        "result-0d-value",
        Result(assignment=1, iteration=1, vehicle="v", ok=True, code_hash="", value=ARRAYS["i8_0d"]),
        Receiver.SERVER_OF_VEHICLE,
    ),
    Example("result_ack", ResultAck(assignment=3, iteration=2), Receiver.VEHICLE),
    Example("vehicle_status", STATUS, Receiver.SERVER_OF_VEHICLE),
    Example(
        "vehicle_status-empty",
        VehicleStatus(frames=0, unknown_frames=0, malformed_frames=0, signal_time=None, sources=[], signals=[]),
        Receiver.SERVER_OF_VEHICLE,
    ),
    Example(
        "submit",
        Submit(
            id=1,
            spec=AssignmentSpec(
                signals=["SPEED.SPEED"],
                window=WindowSpec(amount=100.0, unit="samples", kind="latest"),
                vehicles=["v1", "v2"],
                iterations=5,
                on_board=["mean", "histogram"],
                off_board="fleet",
                params={"bins": [0, 10, 20], "array": ARRAYS["f4_1d"]},
                quorum=0.5,
                deadline=30.0,
                name="speeds",
            ),
        ),
        Receiver.SERVER_OF_ANALYST,
    ),
    Example(
        "submit-count-quorum",
        Submit(
            id=0,
            spec=AssignmentSpec(signals=["A", "B"], window=WindowSpec(amount=1.5), vehicles=3, iterations=0, quorum=2),
        ),
        Receiver.SERVER_OF_ANALYST,
    ),
    Example(
        "submit-defaults",
        Submit(id=2, spec=AssignmentSpec(signals=["A"], window=WindowSpec(amount=10.0), off_board="none")),
        Receiver.SERVER_OF_ANALYST,
    ),
    Example("submitted", Submitted(id=1, assignment=3, vehicles=["v1", "v2"]), Receiver.ANALYST),
    Example("submitted-none", Submitted(id=1, assignment=4, vehicles=[]), Receiver.ANALYST),
    Example("status", StatusRequest(id=2), Receiver.SERVER_OF_ANALYST),
    Example(
        "status_reply",
        StatusReply(
            id=2,
            server_time=T0,
            vehicles=[
                VehicleInfo(vehicle="v1", connected_at=T0 - 60.0, address="10.0.0.1:5555", status=STATUS),
                VehicleInfo(vehicle="v2", connected_at=T0 - 1.0, address="[::1]:6000"),
            ],
            assignments=[
                AssignmentInfo(
                    assignment=3,
                    name="speeds",
                    state="running",
                    iterations=5,
                    completed=2,
                    vehicles=["v1", "v2"],
                    created=T0 - 120.0,
                ),
                AssignmentInfo(
                    assignment=2,
                    name="",
                    state="failed",
                    iterations=1,
                    completed=0,
                    vehicles=[],
                    created=T0 - 500.0,
                    reason="no vehicle",
                ),
            ],
        ),
        Receiver.ANALYST,
    ),
    Example("results", ResultsRequest(id=3, assignment=3, follow=True, since=1), Receiver.SERVER_OF_ANALYST),
    Example("results-defaults", ResultsRequest(id=3, assignment=3), Receiver.SERVER_OF_ANALYST),
    Example(
        "iteration",
        IterationReport(
            id=3,
            assignment=3,
            iteration=1,
            iterations=5,
            status="quorum",
            vehicles={
                "v1": VehicleReport(
                    ok=True, code_hash="h1", value={"mean": ARRAYS["f4_1d"]}, samples={"SPEED.SPEED": 300}
                ),
                "v2": VehicleReport(ok=False, code_hash="h1", error="deadline", late=True),
            },
            missing=["v3"],
            started=T0,
            closed=T0 + 31.25,
            fleet={"mean": ARRAYS["f8_2d"], "empty": ARRAYS["i4_empty_2d"]},
        ),
        Receiver.ANALYST,
    ),
    Example(
        "iteration-failed",
        IterationReport(
            id=3,
            assignment=3,
            iteration=2,
            iterations=0,
            status="failed",
            vehicles={},
            missing=[],
            started=T0,
            closed=T0,
            reason="nobody answered",
        ),
        Receiver.ANALYST,
    ),
    Example("results_end", ResultsEnd(id=3, assignment=3, state="done"), Receiver.ANALYST),
    Example(
        "results_end-reason",
        ResultsEnd(id=3, assignment=3, state="interrupted", reason="server restart"),
        Receiver.ANALYST,
    ),
    Example("cancel", Cancel(id=4, assignment=3), Receiver.SERVER_OF_ANALYST),
    Example("cancelled", Cancelled(id=4, assignment=3, state="cancelled"), Receiver.ANALYST),
    Example(
        "task-module",
        Task(
            assignment=3, iteration=4, signals=["SPEED"], window=WindowSpec(amount=5.0), methods=[], params={},
            deadline=30.0, module_hash=H1,
        ),
        Receiver.VEHICLE,
    ),
    Example("load_module", LoadModule(assignment=3, code_hash=H1, module=MODULE), Receiver.VEHICLE),
    Example(
        "load_module-signed",
        LoadModule(
            assignment=3, code_hash=H1,
            module=ModuleSource(name="speeding.py", source=MODULE.source, signature=bytes(range(64)),
                                signer="0123456789abcdef"),
        ),
        Receiver.VEHICLE,
    ),
    Example("module_ack", ModuleAck(assignment=3, code_hash=H1, ok=True, elapsed=0.004), Receiver.SERVER_OF_VEHICLE),
    Example(
        "module_ack-refused",
        ModuleAck(assignment=3, code_hash=H2, ok=False, error="forbidden import: os (line 1)"),
        Receiver.SERVER_OF_VEHICLE,
    ),
    Example(
        "vehicle_status-sandbox",
        VehicleStatus(
            frames=1, unknown_frames=0, malformed_frames=0, signal_time=None, sources=[], signals=[], pid=4242,
            sandbox=SandboxInfo(pid=4243, started=1, restarts=0, recycles=0, modules=2), modules={"3": H1},
        ),
        Receiver.SERVER_OF_VEHICLE,
    ),
    Example(
        "deploy",
        Deploy(id=5, assignment=3, side="on_board", module=MODULE, vehicles=["v1", "v2"], quorum=0.5, timeout=10.0),
        Receiver.SERVER_OF_ANALYST,
    ),
    Example("deploy-rollback", Deploy(id=6, assignment=3, side="off_board", code_hash=H1[:8]),
            Receiver.SERVER_OF_ANALYST),
    Example(
        "deploying",
        Deploying(id=5, assignment=3, side="on_board", code_hash=H1, name="speeding.py", rollback=False,
                  vehicles=["v1"], offline=["v2"]),
        Receiver.ANALYST,
    ),
    Example(
        "deploy_progress",
        DeployProgress(id=5, answers=[DeployAnswer(vehicle="v1", ok=True, elapsed=0.012),
                                      DeployAnswer(vehicle="v2", ok=False, error="policy", elapsed=0.013)]),
        Receiver.ANALYST,
    ),
    Example(
        "deploy_end",
        DeployEnd(id=5, assignment=3, code_hash=H1, acked=["v1"], refused={"v3": "policy"}, waiting=["v2"],
                  elapsed=0.02, complete=False),
        Receiver.ANALYST,
    ),
    Example(
        "signal_catalogue",
        SignalCatalogue(signals=[
            SignalInfo(name="SPEED.SPEED", unit="km/h", minimum=0.0, maximum=250.0, rate=50.0, samples=1200),
            SignalInfo(name="GPS.LATITUDE"),
        ]),
        Receiver.SERVER_OF_VEHICLE,
    ),
    Example("signals", SignalsRequest(id=8, vehicle="v1"), Receiver.SERVER_OF_ANALYST),
    Example(
        "signals_reply",
        SignalsReply(id=8, vehicles=[VehicleSignals(
            vehicle="v1", connected=True, reported=T0, signals=[SignalInfo(name="SPEED.SPEED", unit="km/h", rate=50.0)]
        )]),
        Receiver.ANALYST,
    ),
    Example("versions", VersionsRequest(id=7, assignment=3), Receiver.SERVER_OF_ANALYST),
    Example(
        "versions_reply",
        VersionsReply(
            id=7,
            assignment=3,
            versions=[
                VersionInfo(side="on_board", code_hash=H1, name="speeding.py", kind="submit", by="ana", at=T0,
                            vehicles=None, acked=["v1", "v2"], iterations=[1, 2], current=False),
                VersionInfo(side="on_board", code_hash=H2, name="speeding.py", kind="deploy", by="ana", at=T0 + 5,
                            vehicles=["v1"], acked=["v1"], iterations=[3], current=True,
                            signer="0123456789abcdef"),
            ],
        ),
        Receiver.ANALYST,
    ),
]

EXAMPLE_IDS = [e.id for e in EXAMPLES]

# One message of each type: for the tables of what may arrive / be sent where.
ONE_OF_EACH: dict[type[Message], Message] = {}
for _e in EXAMPLES:
    ONE_OF_EACH.setdefault(type(_e.message), _e.message)


def frame(message: Message) -> bytes:
    """The bytes of `message` on the wire, built without a Connection."""
    return encode_frame(encode_payload(message))


def handshake(role: Role, identity: str = "peer-1") -> tuple[Connection, Connection]:
    """A server and a client of `role`, both READY after a real hello/welcome."""
    server, client, hello = challenged(role, identity)
    server.receive_data(client.proof(b"\x04" * 32))  # the arithmetic is wire.scram's; here only the order
    assert isinstance(server.next_event(), Proof)
    client.receive_data(server.accept(hello, session="sess-1", server="test-server"))
    welcome = client.next_event()
    assert isinstance(welcome, Welcome)
    assert server.state is State.READY and client.state is State.READY
    return server, client


def challenged(role: Role = Role.VEHICLE, identity: str = "peer-1") -> tuple[Connection, Connection, Hello]:
    """A server that sent its challenge and a client that received it."""
    server = Connection(Side.SERVER)
    client = Connection(Side.CLIENT, role=role)
    server.receive_data(client.hello(identity, NONCE, software="tests"))
    hello = server.next_event()
    assert isinstance(hello, Hello) and hello.identity == identity
    assert server.next_event() is NEED_DATA
    client.receive_data(server.challenge(NONCE + b"\x02" * 24, b"\x03" * 16, 4096))
    assert isinstance(client.next_event(), Challenge)
    return server, client, hello


def endpoints(receiver: Receiver) -> tuple[Connection, Connection | None]:
    """(the connection that receives, the peer connection that may send it, if any)."""
    if receiver is Receiver.SERVER_HANDSHAKE:
        return Connection(Side.SERVER), Connection(Side.CLIENT, role=Role.VEHICLE)
    if receiver is Receiver.CLIENT_HANDSHAKE:
        client = Connection(Side.CLIENT, role=Role.VEHICLE)
        client.hello("vehicle-007", NONCE)
        return client, None  # the server's side of this is challenge(), tested on its own
    if receiver is Receiver.SERVER_CHALLENGED:
        server, client, _ = challenged()
        return server, client
    if receiver is Receiver.CLIENT_PROVED:
        _, client, _ = challenged()
        client.proof(b"\x04" * 32)
        return client, None  # the server's side of this is accept(), tested on its own
    if receiver is Receiver.SERVER_OF_VEHICLE:
        return handshake(Role.VEHICLE)
    if receiver is Receiver.SERVER_OF_ANALYST:
        return handshake(Role.ANALYST)
    server, client = handshake(Role.VEHICLE if receiver is Receiver.VEHICLE else Role.ANALYST)
    return client, server


def after_receiving(conn: Connection, message: Message) -> None:
    """What the application does after a message so that the next one may come."""
    if isinstance(message, Hello):
        conn.challenge(message.nonce + b"\x02" * 24, b"\x03" * 16, 4096)
        # as if a right proof had come: these tests are about framing, not credentials
        conn.handshake = HandshakeState.PROVED
        conn.accept(message, session="sess-2")
    elif isinstance(message, Proof):
        conn.accept(EXAMPLES[0].message, session="sess-2")  # type: ignore[arg-type]
    elif isinstance(message, Challenge):
        conn.proof(b"\x04" * 32)
        conn.state = State.READY  # as if the welcome had come: these tests are about framing


# A message every READY receiver accepts, to follow each example on the wire.
FOLLOW_UP = Error(reason="and the next one", code=ErrorCode.UNEXPECTED, id=7)


# --- raw CBOR for the malformed and property tests -----------------------------------------

RESULT_MAP: dict[str, Any] = {
    "type": "result",
    "assignment": 1,
    "iteration": 1,
    "vehicle": "v1",
    "ok": True,
    "code_hash": "h",
}


def text(s: str) -> bytes:
    """A short CBOR text string, by hand."""
    assert len(s) < 24
    return bytes([0x60 + len(s)]) + s.encode()


def result_with_raw_value(raw: bytes) -> bytes:
    """The payload of a valid result map whose `value` is the given CBOR bytes, verbatim."""
    body = cbor2.dumps(RESULT_MAP)
    assert body[0] == 0xA0 + len(RESULT_MAP)
    return bytes([body[0] + 1]) + body[1:] + text("value") + raw


def same(a: Any, b: Any) -> bool:
    """Equal with the same types (list is not tuple, 1 is not 1.0 nor True), NaN equal
    to NaN, -0.0 apart from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)
