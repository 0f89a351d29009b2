"""Every module of the hostile corpus through the real Supervisor and its real worker.

Each must meet exactly its declared fate, and the fate must cost what it should:

- compile: `load` raises PolicyError with the rule; the worker compiled it and lives on;
- runtime: the call's outcome names the rule; the worker lives on (same pid);
- killed:  the outcome names the rule (timeout, memory, crash); the worker was
           replaced, and the next call runs on the fresh one;
- ok:      the call succeeds.

And nothing leaks: no file appears that the worker's uid wrote, a canary secret that
sits in the supervisor's environment and memory appears in no outcome, no internal
path appears either, and a good module runs right after, in the same supervisor.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np
import pytest

from oodida.sandbox.errors import PolicyError, Rule
from oodida.sandbox.supervisor import SandboxLimits, Supervisor
from tests.sandbox.corpus import load_corpus

CORPUS = load_corpus()
ROOT = Path(__file__).resolve().parents[2]
CANARY = "oodida-canary-hostile-5d0e61"
IN_MEMORY = {"token": CANARY}  # the supervisor's memory holds it too
GOOD = "import numpy as np\n\ndef on_board(window, params, state):\n    return float(np.mean(window['SPEED'].v))\n"
WORKER_UID = 65534
STAGES = {"compile", "runtime", "killed", "ok"}


def stage_of(module) -> str:
    return getattr(module, "stage", None) or module.expect_stage


def rule_of(module) -> Rule | None:
    return module.rule if hasattr(module, "rule") else module.expect_rule


def entry_of(module) -> str:
    return getattr(module, "entry", None) or "on_board"


def window() -> dict:
    t = np.arange(100.0)
    return {"SPEED": (t, 50 + np.sin(t))}


@pytest.fixture(scope="module")
def sandbox():
    os.environ["OODIDA_CANARY"] = CANARY
    loop = asyncio.new_event_loop()
    supervisor = Supervisor(SandboxLimits(call_timeout=3.0, memory_mb=384))
    try:
        loop.run_until_complete(supervisor.start())
        yield supervisor, loop
    finally:
        del os.environ["OODIDA_CANARY"]
        loop.run_until_complete(supervisor.close())
        loop.close()


def test_the_corpus_is_there_and_speaks_our_stages():
    assert len(CORPUS) >= 30
    assert {stage_of(m) for m in CORPUS} <= STAGES
    assert {"compile", "runtime", "killed"} <= {stage_of(m) for m in CORPUS}
    for m in CORPUS:
        assert stage_of(m) == "ok" or isinstance(rule_of(m), Rule), m.path


def files_of_the_worker(since: float) -> list[str]:
    """Files the worker's uid made lately, where a module would try: /tmp, /var/tmp, /dev/shm."""
    found = []
    for top in (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")):
        try:
            entries = list(top.iterdir())
        except OSError:
            continue
        for path in entries:
            try:
                st = path.lstat()
            except OSError:
                continue
            if st.st_uid == WORKER_UID and st.st_mtime >= since:
                found.append(str(path))
    return found


@pytest.mark.parametrize("module", CORPUS, ids=lambda m: m.path.stem)
def test_a_hostile_module_meets_its_fate_and_nothing_leaks(module, sandbox):
    supervisor, loop = sandbox
    stage, rule, entry = stage_of(module), rule_of(module), entry_of(module)
    leak = Path("/tmp/oodida-leak")
    leak.unlink(missing_ok=True)
    started = time.time() - 1
    pid, restarts = supervisor.pid, supervisor.restarts

    async def go():
        refused = outcome = None
        try:
            digest = await supervisor.load(module.source, module.path.name)
        except PolicyError as exc:
            refused = exc
        else:
            if entry == "off_board":
                outcome = await supervisor.call(digest, entry, results={"v1": {"n": 1}}, params={}, state=None)
            else:
                outcome = await supervisor.call(digest, entry, window=window(), params={}, state=None)
        between = (supervisor.pid, supervisor.restarts)
        good = await supervisor.load(GOOD, "good.py")
        after = await supervisor.call(good, "on_board", window=window(), params={}, state=None)
        return refused, outcome, between, after, supervisor.pid

    refused, outcome, (_, restarts_between), after, pid_after = loop.run_until_complete(
        asyncio.wait_for(go(), 30))

    if stage == "compile":
        assert refused is not None, f"{module.path.name} was not refused at load: {outcome}"
        assert rule in {p.rule for p in refused.problems}, refused.problems
        assert restarts_between == restarts and pid_after == pid  # compiled in the worker, which lives on
    else:
        assert refused is None, f"{module.path.name} was refused at load: {refused.problems}"
        if stage == "ok":
            assert outcome.ok, outcome
        else:
            assert not outcome.ok, f"{module.path.name} was not stopped: {outcome}"
            assert outcome.rule is rule, outcome
            assert outcome.message
        if stage == "killed":
            assert restarts_between == restarts + 1 and pid_after != pid, "the worker was not replaced"
        else:
            assert restarts_between == restarts and pid_after == pid, "a refused module cost the worker"

    text = repr(outcome) + repr(refused.problems if refused else None)
    assert CANARY not in text and "OODIDA_CANARY" not in text
    assert str(ROOT) not in text and "/root/" not in text, text  # no internal path, no traceback
    assert not leak.exists()
    assert files_of_the_worker(started) == []
    assert after.ok and after.value == pytest.approx(float(np.mean(window()["SPEED"][1])))
    assert IN_MEMORY["token"] == CANARY and os.environ["OODIDA_CANARY"] == CANARY  # untouched here


def test_after_the_whole_corpus_the_worker_is_confined_as_at_start(sandbox):
    supervisor, loop = sandbox
    assert all(layer.applied for layer in supervisor.layers) or os.geteuid() != 0, supervisor.layers
    status = Path(f"/proc/{supervisor.pid}/status").read_text()
    assert "Seccomp:\t2" in status and "NoNewPrivs:\t1" in status
    environ = Path(f"/proc/{supervisor.pid}/environ").read_bytes()
    assert CANARY.encode() not in environ
    good = loop.run_until_complete(supervisor.load(GOOD, "good.py"))
    outcome = loop.run_until_complete(supervisor.call(good, "on_board", window=window()))
    assert outcome.ok
