"""Every hostile module of the corpus through the real sandbox worker.

Each must meet exactly its declared fate: refused at compile with its rule, refused
at run time with its rule, or killed (timeout). And nothing may leak: the worker
writes no file, the supervisor's secrets appear in no outcome, and a good module
runs fine right after, in the same supervisor.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from oodida.sandbox.errors import PolicyError, Rule
from oodida.sandbox.policy import check_source
from oodida.sandbox.supervisor import SandboxLimits, Supervisor
from tests.sandbox.corpus import load_corpus

CORPUS = load_corpus()
SECRET = "oodida-canary-7f3a9c"
GOOD = "import numpy as np\n\ndef on_board(window, params, state):\n    return float(np.mean(window['SPEED'].v))\n"


def test_the_corpus_is_big_enough_and_covers_every_fate():
    assert len(CORPUS) >= 30
    stages = {m.stage for m in CORPUS}
    assert stages == {"compile", "runtime", "killed", "ok"}
    rules = {m.rule for m in CORPUS}
    for rule in (Rule.TIMEOUT, Rule.MEMORY, Rule.FORBIDDEN_IMPORT, Rule.FORBIDDEN_ATTRIBUTE,
                 Rule.DISALLOWED_RETURN, Rule.RESULT_TOO_LARGE):
        assert rule in rules


@pytest.mark.parametrize("module", [m for m in CORPUS if m.stage == "compile"], ids=lambda m: m.id)
def test_refused_at_compile_with_its_rule(module):
    problems = check_source(module.source, module.path.name)
    assert problems, "the policy let it through"
    assert module.rule in {p.rule for p in problems}, problems
    assert all(p.line is not None for p in problems if p.rule is not Rule.MISSING_ENTRY)


@pytest.fixture(scope="module")
def sandbox():
    os.environ["OODIDA_SECRET_TOKEN"] = SECRET  # the supervisor's environment holds a secret
    limits = SandboxLimits(call_timeout=3.0, memory_mb=384)
    supervisor = Supervisor(limits)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(supervisor.start())
    yield supervisor, loop
    loop.run_until_complete(supervisor.close())
    loop.close()
    del os.environ["OODIDA_SECRET_TOKEN"]


def window() -> dict:
    t = np.arange(100.0)
    return {"SPEED": (t, 50 + np.sin(t))}


@pytest.mark.parametrize("module", [m for m in CORPUS if m.stage != "compile"], ids=lambda m: m.id)
def test_runtime_fates_in_the_real_worker(module, sandbox, tmp_path):
    supervisor, loop = sandbox
    leak = Path("/tmp/oodida-leak")
    leak.unlink(missing_ok=True)

    async def go():
        digest = await supervisor.load(module.source, module.path.name)
        outcome = await supervisor.call(digest, "on_board", window=window(), params={}, state=None)
        good = await supervisor.load(GOOD, "good.py")
        after = await supervisor.call(good, "on_board", window=window(), params={}, state=None)
        return outcome, after

    outcome, after = loop.run_until_complete(asyncio.wait_for(go(), 30))
    if module.stage == "ok":
        assert outcome.ok, outcome
    else:
        assert not outcome.ok, f"{module.id} was not stopped: {outcome}"
        assert outcome.rule is module.rule, outcome
        assert outcome.message
    assert SECRET not in repr(outcome)
    assert not leak.exists()
    assert after.ok and after.value == pytest.approx(float(np.mean(window()["SPEED"][1])))


def test_a_worker_cannot_see_the_supervisors_environment_or_files(sandbox):
    supervisor, loop = sandbox
    pid = supervisor.pid
    status = Path(f"/proc/{pid}/status").read_text()
    assert "NoNewPrivs:\t1" in status
    assert "Seccomp:\t2" in status
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    if os.geteuid() == 0:
        assert uid_line.split()[1:] == ["65534"] * 4
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert SECRET.encode() not in environ and b"OODIDA" not in environ
    fds = os.listdir(f"/proc/{pid}/fd")
    assert len(fds) <= 5  # stdin, stdout, stderr (/dev/null) and its two pipes
    limits = Path(f"/proc/{pid}/limits").read_text()
    assert "Max file size             0" in limits
    if os.geteuid() == 0:
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")


def test_compile_problems_are_refused_before_the_worker_sees_them(sandbox):
    supervisor, loop = sandbox
    with pytest.raises(PolicyError) as err:
        loop.run_until_complete(supervisor.load("import os\ndef on_board(w, p, s):\n    return 1\n", "m.py"))
    assert err.value.problems[0].rule is Rule.FORBIDDEN_IMPORT and err.value.problems[0].line == 1
