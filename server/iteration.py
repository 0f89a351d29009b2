"""One iteration of an assignment as a pure state machine: no sockets, no clocks.

The runner feeds it results and the current time; it says when to close and what the
outcome is. Quorum: the iteration closes as soon as `quorum` selected vehicles have
answered (by default all of them), or at the deadline with whatever arrived.

Majority vote: every result names the code that computed it. At close, the hash
most answering vehicles used wins (a tie goes to the newest deployed version), only
its results are aggregated, and the others are set aside with their hashes, so a
fleet result never mixes versions of an analyst's module.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from oodida.wire.messages import Result


class Status(enum.StrEnum):
    OPEN = "open"
    COMPLETE = "complete"  # every selected vehicle answered
    QUORUM = "quorum"  # closed at quorum; the others are missing
    PARTIAL = "partial"  # deadline passed below quorum; aggregated what came
    FAILED = "failed"  # no usable answer
    CANCELLED = "cancelled"


def quorum_count(quorum: int | float | None, selected: int) -> int:
    """The number of answers that closes an iteration of `selected` vehicles."""
    if quorum is None:
        return selected
    if isinstance(quorum, float):
        return max(1, min(selected, math.ceil(quorum * selected - 1e-9)))
    return max(1, min(selected, quorum))


def vote(answers: dict[str, Result], newest_first: Sequence[str] = ()) -> str | None:
    """The code hash most of these answers were computed with; a tie goes to the hash
    earliest in `newest_first`, then to the smallest hash (so every replay agrees)."""
    counts = Counter(r.code_hash for r in answers.values())
    if not counts:
        return None
    top = max(counts.values())
    tied = [h for h, n in counts.items() if n == top]
    rank = {h: i for i, h in enumerate(newest_first)}
    return min(tied, key=lambda h: (rank.get(h, len(rank)), h))


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    ok: dict[str, Result]
    failed: dict[str, Result]
    missing: list[str]
    reason: str
    code_hash: str | None = None  # the version the aggregated results were computed with
    set_aside: dict[str, str] = field(default_factory=dict)  # vehicle -> the other version it ran


@dataclass
class Iteration:
    assignment: int
    number: int
    selected: tuple[str, ...]
    quorum: int
    deadline_at: float  # on the runner's monotonic clock
    answers: dict[str, Result] = field(default_factory=dict)
    status: Status = Status.OPEN
    _members: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._members = frozenset(self.selected)  # `in` on the tuple is O(fleet) per result

    def add(self, result: Result) -> bool:
        """Take a result; False for a vehicle not selected, or one already answered."""
        if self.status is not Status.OPEN or result.vehicle not in self._members or result.vehicle in self.answers:
            return False
        self.answers[result.vehicle] = result
        return True

    def waits_for(self, vehicle: str) -> bool:
        """Selected and not answered yet (without listing everyone who is)."""
        return vehicle in self._members and vehicle not in self.answers

    def waiting_for(self) -> list[str]:
        return [v for v in self.selected if v not in self.answers]

    def should_close(self, now: float) -> bool:
        return len(self.answers) >= self.quorum or now >= self.deadline_at

    def close(self, now: float, *, cancelled: bool = False, newest_first: Sequence[str] = ()) -> Outcome:
        """The outcome; `newest_first` (code hashes, newest deploy first) breaks a tie
        in the vote."""
        winner = vote(self.answers, newest_first)
        counted = {v: r for v, r in self.answers.items() if r.code_hash == winner}
        set_aside = {v: r.code_hash for v, r in self.answers.items() if r.code_hash != winner}
        ok = {v: r for v, r in counted.items() if r.ok}
        failed = {v: r for v, r in counted.items() if not r.ok}
        missing = self.waiting_for()
        answered = len(self.answers)
        missing_text = f"; no answer from {', '.join(missing)}" if missing else ""
        if cancelled:
            status, reason = Status.CANCELLED, f"cancelled with {answered} of {len(self.selected)} answers"
        elif not ok:
            status = Status.FAILED
            reason = (
                f"no usable answer: {answered} of {len(self.selected)} vehicles answered, none successfully"
                + missing_text
            )
        elif answered == len(self.selected):
            status, reason = Status.COMPLETE, f"all {answered} vehicles answered"
        elif answered >= self.quorum:
            status, reason = Status.QUORUM, f"quorum of {self.quorum} reached{missing_text}"
        else:
            status = Status.PARTIAL
            reason = f"deadline passed with {answered} of {self.quorum} needed answers{missing_text}"
        if failed:
            reason += "; failed on " + ", ".join(sorted(failed))
        if set_aside:
            assert winner is not None
            reason += f"; {len(counted)} of {answered} ran version {winner[:12]}, set aside: " + ", ".join(
                f"{v} ({h[:12]})" for v, h in sorted(set_aside.items())
            )
        self.status = status
        return Outcome(status, ok, failed, missing, reason, winner, set_aside)
