"""The iteration state machine: quorum, deadline, and what it says about who is missing."""

from __future__ import annotations

import pytest

from oodida.server.iteration import Iteration, Status, quorum_count, vote
from oodida.wire.messages import Result


def result(vehicle: str, ok: bool = True) -> Result:
    if ok:
        return Result(assignment=1, iteration=1, vehicle=vehicle, ok=True, code_hash="h", value={"count": {}})
    return Result(assignment=1, iteration=1, vehicle=vehicle, ok=False, code_hash="h", error="window not complete")


def make(selected=("a", "b", "c"), quorum=None, deadline=10.0) -> Iteration:
    return Iteration(1, 1, tuple(selected), quorum_count(quorum, len(selected)), deadline)


@pytest.mark.parametrize(
    ("quorum", "selected", "expected"),
    [(None, 5, 5), (3, 5, 3), (9, 5, 5), (0.5, 5, 3), (1.0, 5, 5), (0.2, 5, 1), (0.01, 5, 1), (0.6, 5, 3)],
)
def test_quorum_count(quorum, selected, expected):
    assert quorum_count(quorum, selected) == expected


def test_closes_when_everyone_answered():
    it = make()
    for v in "ab":
        assert it.add(result(v))
        assert not it.should_close(0.0)
    assert it.add(result("c"))
    assert it.should_close(0.0)
    outcome = it.close(0.0)
    assert outcome.status is Status.COMPLETE and outcome.missing == [] and set(outcome.ok) == {"a", "b", "c"}


def test_closes_at_quorum_and_names_the_missing():
    it = make(quorum=2)
    it.add(result("a"))
    it.add(result("c"))
    assert it.should_close(0.0)
    outcome = it.close(0.0)
    assert outcome.status is Status.QUORUM
    assert outcome.missing == ["b"]
    assert "b" in outcome.reason


def test_deadline_closes_below_quorum_with_partial_result():
    it = make(deadline=5.0)
    it.add(result("a"))
    assert not it.should_close(4.9)
    assert it.should_close(5.0)
    outcome = it.close(5.0)
    assert outcome.status is Status.PARTIAL and outcome.missing == ["b", "c"]
    assert "deadline" in outcome.reason and "b, c" in outcome.reason


def test_no_usable_answer_fails_and_says_why():
    it = make(selected=("a", "b"))
    it.add(result("a", ok=False))
    outcome = it.close(99.0)
    assert outcome.status is Status.FAILED
    assert set(outcome.failed) == {"a"} and outcome.missing == ["b"]
    assert "failed on a" in outcome.reason


def test_duplicates_and_strangers_are_not_counted():
    it = make(selected=("a", "b"))
    assert it.add(result("a"))
    assert not it.add(result("a"))  # the same vehicle twice
    assert not it.add(result("zz"))  # not selected
    assert len(it.answers) == 1


def test_closed_iteration_takes_nothing():
    it = make(selected=("a",))
    it.close(0.0, cancelled=True)
    assert it.status is Status.CANCELLED
    assert not it.add(result("a"))


# --- majority vote over code versions ------------------------------------------------


def versioned(vehicle: str, code_hash: str, ok: bool = True) -> Result:
    if ok:
        return Result(assignment=1, iteration=1, vehicle=vehicle, ok=True, code_hash=code_hash, value={"v": code_hash})
    return Result(assignment=1, iteration=1, vehicle=vehicle, ok=False, code_hash=code_hash, error="broke")


def test_vote_aggregates_only_the_majority_version_and_sets_the_others_aside():
    it = make(selected=("a", "b", "c", "d", "e"))
    for v, h in zip("abcde", ["new", "old", "new", "new", "old"], strict=True):
        it.add(versioned(v, h))
    outcome = it.close(0.0)
    assert outcome.code_hash == "new"
    assert set(outcome.ok) == {"a", "c", "d"} and outcome.failed == {}
    assert outcome.set_aside == {"b": "old", "e": "old"}
    assert outcome.status is Status.COMPLETE  # set-aside vehicles did answer
    assert "3 of 5 ran version new, set aside: b (old), e (old)" in outcome.reason


def test_vote_counts_failed_answers_too_so_a_broken_majority_fails_the_iteration():
    it = make()
    it.add(versioned("a", "new", ok=False))
    it.add(versioned("b", "new", ok=False))
    it.add(versioned("c", "old"))
    outcome = it.close(0.0)
    assert outcome.code_hash == "new" and outcome.ok == {} and set(outcome.failed) == {"a", "b"}
    assert outcome.status is Status.FAILED and outcome.set_aside == {"c": "old"}


@pytest.mark.parametrize(
    ("newest_first", "winner"), [(["y", "x"], "y"), (["x", "y"], "x"), ([], "x"), (["z"], "x")]
)
def test_a_tie_goes_to_the_newest_deployed_version_then_to_the_smaller_hash(newest_first, winner):
    answers = {v: versioned(v, h) for v, h in [("a", "x"), ("b", "y"), ("c", "x"), ("d", "y")]}
    assert vote(answers, newest_first) == winner
    assert vote({}) is None


def test_one_version_means_nothing_is_set_aside():
    it = make()
    for v in "abc":
        it.add(versioned(v, "builtin:0.1"))
    outcome = it.close(0.0)
    assert outcome.code_hash == "builtin:0.1" and outcome.set_aside == {} and "set aside" not in outcome.reason
