"""The lifecycles' tables (`wire.states`): every move they allow, a clear refusal of
every other, and the state enums leaving the bytes on the wire as they were."""

from __future__ import annotations

import itertools

import cbor2
import pytest

from oodida.wire.codec import decode_payload, encode_payload
from oodida.wire.errors import LocalProtocolError, RemoteProtocolError
from oodida.wire.messages import (
    AssignmentInfo,
    Cancelled,
    Message,
    ResultsEnd,
    SourceState,
    StatusReply,
    VehicleStatus,
)
from oodida.wire.states import (
    ASSIGNMENT,
    HANDSHAKE,
    AssignmentEvent,
    AssignmentState,
    HandshakeEvent,
    HandshakeState,
    SourcePhase,
    StateError,
    Transitions,
)

A, AE = AssignmentState, AssignmentEvent
H, HE = HandshakeState, HandshakeEvent

ASSIGNMENT_MOVES = {
    (A.RUNNING, AE.COMPLETE): A.DONE,
    (A.RUNNING, AE.CANCEL): A.CANCELLED,
    (A.RUNNING, AE.FAIL): A.FAILED,
    (A.RUNNING, AE.INTERRUPT): A.INTERRUPTED,
}
HANDSHAKE_MOVES = {
    (H.START, HE.HELLO): H.GREETED,
    (H.GREETED, HE.CHALLENGE): H.CHALLENGED,
    (H.CHALLENGED, HE.PROOF): H.PROVED,
    (H.PROVED, HE.WELCOME): H.WELCOMED,
}
TABLES = [
    pytest.param(ASSIGNMENT, AssignmentState, AssignmentEvent, ASSIGNMENT_MOVES, id="assignment"),
    pytest.param(HANDSHAKE, HandshakeState, HandshakeEvent, HANDSHAKE_MOVES, id="handshake"),
]


@pytest.mark.parametrize(("table", "states", "events", "moves"), TABLES)
def test_every_allowed_move_leads_where_the_lifecycle_says(table, states, events, moves) -> None:
    for (state, event), target in moves.items():
        assert table.allows(state, event)
        assert table.next(state, event) is target


@pytest.mark.parametrize(("table", "states", "events", "moves"), TABLES)
def test_every_other_move_is_refused_with_what_was_tried_and_what_is_allowed(table, states, events, moves) -> None:
    refused = [(s, e) for s, e in itertools.product(states, events) if (s, e) not in moves]
    assert len(refused) == len(states) * len(events) - len(moves)
    for state, event in refused:
        assert not table.allows(state, event)
        with pytest.raises(StateError) as caught:
            table.next(state, event)
        message = str(caught.value)
        assert message.startswith(f"{table.lifecycle}: {event.value} is not allowed in state {state.value} ")
        allowed = sorted(e.value for (s, e) in moves if s is state)
        assert message.endswith(f"(allowed there: {', '.join(allowed)})" if allowed else f"{state.value} is final)")
        assert (caught.value.state, caught.value.event) == (state, event)
        assert isinstance(caught.value, LocalProtocolError)  # a bug of the driver, as in h11


def test_final_states_are_the_ones_no_event_leaves() -> None:
    assert {s for s in AssignmentState if ASSIGNMENT.final(s)} == {A.DONE, A.CANCELLED, A.FAILED, A.INTERRUPTED}
    assert {s for s in HandshakeState if HANDSHAKE.final(s)} == {H.WELCOMED}
    assert ASSIGNMENT.allowed(A.RUNNING) == frozenset(AssignmentEvent)


def test_a_table_that_forgets_a_state_or_leads_nowhere_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="not in the table"):
        Transitions("t", HandshakeState, {H.START: {}})
    with pytest.raises(ValueError, match="which is not a state"):
        Transitions("t", AssignmentState, {**{s: {} for s in AssignmentState}, A.RUNNING: {AE.COMPLETE: H.WELCOMED}})


def test_states_are_the_strings_they_were() -> None:
    assert [s.value for s in AssignmentState] == ["running", "done", "cancelled", "failed", "interrupted"]
    assert [s.value for s in SourcePhase] == ["starting", "running", "ended", "failed"]
    assert AssignmentState.DONE == "done" and f"{AssignmentState.DONE}" == "done"


# Bytes of these messages as the Literal-typed fields encoded them, before the enums.
WIRE = [
    (
        Cancelled(id=3, assignment=7, state=A.CANCELLED),
        "a464747970656963616e63656c6c6564626964036a61737369676e6d656e74076573746174656963616e63656c6c6564",
    ),
    (
        ResultsEnd(id=4, assignment=7, state=A.INTERRUPTED, reason="the server stopped"),
        "a564747970656b726573756c74735f656e64626964046a61737369676e6d656e74076573746174656b696e74657272757074656466"
        "726561736f6e72746865207365727665722073746f70706564",
    ),
    (
        StatusReply(id=5, server_time=1.5, vehicles=[], assignments=[
            AssignmentInfo(assignment=7, name="m", state=A.DONE, iterations=2, completed=2, vehicles=["v1"],
                           created=1.0)
        ]),
        "a764747970656c7374617475735f7265706c79626964056b7365727665725f74696d65fb3ff80000000000006876656869636c6573"
        "806b61737369676e6d656e747381ab6a61737369676e6d656e7407646e616d65616d65737461746564646f6e656a69746572617469"
        "6f6e730269636f6d706c65746564026876656869636c6573816276316763726561746564fb3ff000000000000066726561736f6ef6"
        "677061727469616c00666661696c656400646f70656ef663706964006773616e64626f78f6",
    ),
    (
        VehicleStatus(frames=1, unknown_frames=0, malformed_frames=0, signal_time=None, signals=[],
                      sources=[SourceState(name="can0", state=SourcePhase.FAILED, frames=3, error="gone")]),
        "b364747970656e76656869636c655f737461747573666672616d6573016e756e6b6e6f776e5f6672616d657300706d616c666f726d"
        "65645f6672616d6573006b7369676e616c5f74696d65f667736f757263657381a4646e616d656463616e30657374617465666661"
        "696c6564666672616d657303656572726f7264676f6e65677369676e616c73806c6572726f725f6672616d6573006d72656d6f74"
        "655f6672616d65730070756e7265616461626c655f6c696e6573006c6c6174655f73616d706c65730068706f736974696f6ef667"
        "72756e6e696e67006f70656e64696e675f726573756c7473006e6f7574626f785f64726f70706564006c6f7574626f785f657272"
        "6f72f663706964006773616e64626f78f6676d6f64756c6573a0",
    ),
]


@pytest.mark.parametrize(("message", "hex_bytes"), WIRE, ids=[type(m).__name__ for m, _ in WIRE])
def test_the_bytes_on_the_wire_are_unchanged_and_decode_to_the_same_message(message: Message, hex_bytes: str) -> None:
    assert encode_payload(message).hex() == hex_bytes
    decoded = decode_payload(bytes.fromhex(hex_bytes))
    assert decoded == message


def test_decoded_states_are_enum_members() -> None:
    cancelled = decode_payload(bytes.fromhex(WIRE[0][1]))
    assert isinstance(cancelled, Cancelled) and cancelled.state is A.CANCELLED
    status = decode_payload(bytes.fromhex(WIRE[3][1]))
    assert isinstance(status, VehicleStatus) and status.sources[0].state is SourcePhase.FAILED


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"type": "cancelled", "id": 3, "assignment": 7, "state": "paused"},
         "invalid 'cancelled' message: Invalid enum value 'paused' - at `$.state`"),
        ({"type": "results_end", "id": 3, "assignment": 7, "state": 2},
         "invalid 'results_end' message: Expected `str`, got `int` - at `$.state`"),
        ({"type": "vehicle_status", "frames": 1, "unknown_frames": 0, "malformed_frames": 0, "signal_time": None,
          "signals": [], "sources": [{"name": "can0", "state": "RUNNING"}]},
         "invalid 'vehicle_status' message: Invalid enum value 'RUNNING' - at `$.sources[0].state`"),
    ],
)
def test_a_peer_sending_an_unknown_state_gets_the_same_clear_error(obj: dict, reason: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        decode_payload(cbor2.dumps(obj))
    assert caught.value.reason == reason
    assert not caught.value.fatal  # the frame was sound: the connection goes on
