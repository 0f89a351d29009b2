"""The version registry of one assignment, without sockets: who should run what,
what `oodida versions` shows, how many acknowledgements a deploy waits for, and how
deploy events and the version table read."""

from __future__ import annotations

import pytest

from oodida.commands.deploy import _ranges, render_deploy_event, render_versions
from oodida.server.deploys import deploy_quorum
from oodida.server.store import DeploymentRow
from oodida.server.versions import AssignmentVersions, version_table
from oodida.wire.messages import (
    DeployAnswer,
    DeployEnd,
    Deploying,
    DeployProgress,
    ModuleAck,
    ModuleSource,
    VersionsReply,
)

H1, H2, H3 = "1" * 64, "2" * 64, "3" * 64
M = ModuleSource(name="m.py", source="def on_board(window, params, state):\n    return 1\n")


def test_a_canary_deploy_targets_only_its_vehicles_and_a_full_one_everyone():
    v = AssignmentVersions(["a", "b", "c"])
    assert v.deploy_on_board(H1, M, None) == ["a", "b", "c"]
    assert v.deploy_on_board(H2, M, ["b"], migrates=True) == ["b"]
    assert v.target == {"a": H1, "b": H2, "c": H1}
    assert v.migrate_next is None  # a canary does not migrate the shared state
    assert v.load_message(7, "b").code_hash == H2 and v.load_message(7, "b").assignment == 7
    assert v.load_message(7, "stranger") is None
    v.deploy_on_board(H3, M, None, migrates=True)
    assert v.migrate_next == H3 and set(v.target.values()) == {H3}
    v.deploy_on_board(H1, M, None)  # a rollback moves the old version to the front again
    assert v.newest_first == [H1, H3, H2]


def test_off_board_versions_wait_for_the_next_iteration():
    v = AssignmentVersions(["a"])
    v.deploy_off_board(H1, M, initial=True)
    assert v.off_board == H1 and v.off_board_next is None
    v.deploy_off_board(H2, M)
    assert v.off_board == H1 and v.off_board_next == H2


async def test_acks_reach_only_the_watchers_of_that_version_and_those_vehicles():
    v = AssignmentVersions(["a", "b"])
    w2 = v.watch(H2, ["a"])
    w3 = v.watch(H3, ["a", "b"])
    v.on_ack("a", ModuleAck(assignment=1, code_hash=H2, ok=True))
    v.on_ack("b", ModuleAck(assignment=1, code_hash=H2, ok=True))  # b was not asked by w2
    v.on_ack("b", ModuleAck(assignment=1, code_hash=H3, ok=False, error="policy"))
    assert v.acked == {"a": H2, "b": H2}  # a refusal does not change what b runs
    assert [w2.answers.get_nowait().vehicle] == ["a"] and w2.answers.empty()
    answer = w3.answers.get_nowait()
    assert (answer.vehicle, answer.ok, answer.error) == ("b", False, "policy")
    v.unwatch(w2)
    v.on_ack("a", ModuleAck(assignment=1, code_hash=H2, ok=True))
    assert w2.answers.empty()


def row(i: int, side: str, h: str, kind: str = "deploy", vehicles: list[str] | None = None) -> DeploymentRow:
    return DeploymentRow(i, 1, side, h, f"m{i}.py", kind, "ana", 1_700_000_000.0 + i, vehicles)


def test_version_table_marks_what_is_current_after_replaying_the_deploys():
    deployments = [
        row(1, "on_board", H1, "submit"),
        row(2, "off_board", H1, "submit"),
        row(3, "on_board", H2, vehicles=["b"]),
        row(4, "off_board", H3),
    ]
    table = version_table(
        deployments, {("on_board", H2): ["b"]}, {("on_board", H1): [1, 2], ("off_board", H3): [3]}, ["a", "b"]
    )
    assert [t.current for t in table] == [True, False, True, True]  # a still runs H1, b runs H2
    assert table[2].acked == ["b"] and table[0].iterations == [1, 2] and table[3].iterations == [3]
    table = version_table([*deployments, row(5, "on_board", H1, "rollback")], {}, {}, ["a", "b"])
    assert [t.current for t in table] == [False, False, False, True, True]


@pytest.mark.parametrize(
    ("quorum", "targets", "connected", "need"),
    [(None, 5, 3, 3), (None, 5, 0, 0), (2, 5, 3, 2), (9, 5, 5, 5), (0.5, 5, 5, 3), (1.0, 4, 2, 4)],
)
def test_deploy_quorum(quorum, targets, connected, need):
    assert deploy_quorum(quorum, targets, connected) == need


def test_deploy_events_and_the_version_table_read_as_sentences():
    started = Deploying(id=1, assignment=4, side="on_board", code_hash=H2, name="m.py", rollback=True,
                        vehicles=["a"], offline=["b"])
    assert render_deploy_event(started) == (
        f"rolling back to m.py {H2[:12]} to assignment 4 (on board): 1 vehicles;"
        " offline (they load it when they reconnect): b"
    )
    progress = DeployProgress(id=1, answers=[
        DeployAnswer(vehicle="a", ok=False, error="policy", elapsed=0.01),
        DeployAnswer(vehicle="b", ok=True, elapsed=0.0123),
    ])
    assert render_deploy_event(progress).splitlines() == [
        "  a            REFUSED it, keeps its version: policy  +10.0 ms",
        "  b            runs it  +12.3 ms",
    ]
    end = DeployEnd(id=1, assignment=4, code_hash=H2, acked=["a"], refused={}, waiting=["b"], elapsed=0.0123,
                    complete=True)
    assert render_deploy_event(end) == f"1 of 2 run {H2[:12]}, 12.3 ms after the deploy; no answer yet from b"
    table = version_table([row(1, "on_board", H1, "submit"), row(2, "on_board", H2, vehicles=["a"])],
                          {("on_board", H2): ["a"]}, {("on_board", H1): [1, 2, 3, 5]}, ["a", "b"])
    text = render_versions(VersionsReply(id=1, assignment=4, versions=table))
    assert "1-3,5" in text and H2[:12] in text and "(deployed to a)" in text
    assert _ranges([]) == "—" and _ranges([4]) == "4" and _ranges([1, 2, 4, 5, 6, 9]) == "1-2,4-6,9"
