"""The protocol's states, and which event moves which state where, in one place.

As in h11's `_state.py`: each lifecycle is a table `{state: {event: next state}}`
and one function applies an event to a state; whatever the table does not list is
refused with a `StateError` that says what was tried, in which state, and what that
state allows. The code that drives a lifecycle (the connection's handshake, the
server's assignment runner) asks the table instead of deciding itself.

States are `StrEnum`s: on the wire, in SQLite and in JSON they are the same strings
as before (msgspec and cbor2 encode a member as its value, and decoding a field typed
by one refuses any other string with the same "Invalid enum value" error a `Literal`
gave), and they still compare equal to those strings.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Generic, TypeVar

from oodida.wire.errors import LocalProtocolError


class StateError(LocalProtocolError):
    """An event the table does not allow in the current state.

    A bug of whoever drives the lifecycle, so a `LocalProtocolError` (as h11 raises
    for its own table); the connection turns a peer's out-of-order message into a
    `RemoteProtocolError` itself, with its own reason."""

    def __init__(self, lifecycle: str, state: enum.StrEnum, event: enum.StrEnum, allowed: frozenset[enum.StrEnum]):
        there = ", ".join(sorted(allowed)) if allowed else f"nothing, {state} is final"
        super().__init__(f"{lifecycle}: {event!s} is not allowed in state {state!s} (allowed there: {there})")
        self.lifecycle = lifecycle
        self.state = state
        self.event = event


S = TypeVar("S", bound=enum.StrEnum)
E = TypeVar("E", bound=enum.StrEnum)


class Transitions(Generic[S, E]):
    """One lifecycle's table. Every state must be a key (a final state maps to no
    events) and every target a state, so a state forgotten in the table is an import
    error, not a refusal at run time."""

    def __init__(self, lifecycle: str, states: type[S], table: Mapping[S, Mapping[E, S]]) -> None:
        missing = [s for s in states if s not in table]
        if missing:
            raise ValueError(f"{lifecycle}: states {missing} are not in the table")
        for state, moves in table.items():
            for event, target in moves.items():
                if target not in table:
                    raise ValueError(f"{lifecycle}: {state} --{event}--> {target}, which is not a state")
        self.lifecycle = lifecycle
        self.table: Mapping[S, Mapping[E, S]] = table

    def allowed(self, state: S) -> frozenset[E]:
        """The events `state` accepts."""
        return frozenset(self.table[state])

    def allows(self, state: S, event: E) -> bool:
        return event in self.table[state]

    def final(self, state: S) -> bool:
        """No event leaves `state`."""
        return not self.table[state]

    def next(self, state: S, event: E) -> S:
        """The state `event` leads to from `state`; `StateError` if the table has no such move."""
        try:
            return self.table[state][event]
        except KeyError:
            raise StateError(self.lifecycle, state, event, self.allowed(state)) from None


# --- an assignment, on the server ---------------------------------------------------


class AssignmentState(enum.StrEnum):
    RUNNING = "running"  # from the submit on, also across a server restart (it resumes)
    DONE = "done"  # every iteration ran
    CANCELLED = "cancelled"  # an analyst cancelled it
    FAILED = "failed"  # an internal error ended it
    INTERRUPTED = "interrupted"  # the server stopped while it ran, or could not resume it


class AssignmentEvent(enum.StrEnum):
    COMPLETE = "complete"  # the last iteration closed
    CANCEL = "cancel"
    FAIL = "fail"
    INTERRUPT = "interrupt"


# A server stopping so that the next process resumes the assignment is no event: the
# assignment stays running, on disk and in this table.
ASSIGNMENT: Transitions[AssignmentState, AssignmentEvent] = Transitions(
    "assignment",
    AssignmentState,
    {
        AssignmentState.RUNNING: {
            AssignmentEvent.COMPLETE: AssignmentState.DONE,
            AssignmentEvent.CANCEL: AssignmentState.CANCELLED,
            AssignmentEvent.FAIL: AssignmentState.FAILED,
            AssignmentEvent.INTERRUPT: AssignmentState.INTERRUPTED,
        },
        AssignmentState.DONE: {},
        AssignmentState.CANCELLED: {},
        AssignmentState.FAILED: {},
        AssignmentState.INTERRUPTED: {},
    },
)


# --- the handshake, on either side of a connection --------------------------------


class HandshakeState(enum.StrEnum):
    """How far a connection's handshake went; the same on both sides (the client
    sends the hello and the proof, the server the challenge and the welcome)."""

    START = "start"  # nothing yet
    GREETED = "greeted"  # the hello went (client) or came (server)
    CHALLENGED = "challenged"  # the challenge came (client) or went (server)
    PROVED = "proved"  # the proof went (client) or came (server)
    WELCOMED = "welcomed"  # the welcome came (client) or went (server): the connection is ready


class HandshakeEvent(enum.StrEnum):
    """A handshake message passing, named by its tag. An error (a refusal) is not in
    the table: it may come at any step and closes the connection."""

    HELLO = "hello"
    CHALLENGE = "challenge"
    PROOF = "proof"
    WELCOME = "welcome"


HANDSHAKE: Transitions[HandshakeState, HandshakeEvent] = Transitions(
    "handshake",
    HandshakeState,
    {
        HandshakeState.START: {HandshakeEvent.HELLO: HandshakeState.GREETED},
        HandshakeState.GREETED: {HandshakeEvent.CHALLENGE: HandshakeState.CHALLENGED},
        HandshakeState.CHALLENGED: {HandshakeEvent.PROOF: HandshakeState.PROVED},
        HandshakeState.PROVED: {HandshakeEvent.WELCOME: HandshakeState.WELCOMED},
        HandshakeState.WELCOMED: {},
    },
)


# --- a vehicle's data source, reported in its status ------------------------------


class SourcePhase(enum.StrEnum):
    """Where a source's reader thread is (a `SourceState` on the wire carries it).

    Defined here, not in `agent`, because the status message types its field with
    it and `wire` imports no agent code. A GPS source goes back and forth between
    running and failed as its device comes and goes; no table for that."""

    STARTING = "starting"
    RUNNING = "running"
    ENDED = "ended"
    FAILED = "failed"
