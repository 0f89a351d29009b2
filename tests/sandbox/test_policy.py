"""The compile policy and the restricted world, in-process: the hostile corpus up
to where this process can follow it (compile and run-time refusals; the killed
ones belong to the real worker), and good modules that must keep working.

Memory bombs run in a child process with an address-space limit, as the worker
does: without one, `[0] * 10**10` would take this test run down with it.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oodida.sandbox import policy
from oodida.sandbox.check import check_file, format_problems
from oodida.sandbox.errors import PolicyError, Problem, Rule, Violation
from oodida.sandbox.facade import FACADE_MEMBERS, FACADES, Facade, Guarded
from oodida.sandbox.policy import (
    ALLOWED_IMPORTS,
    ENTRY_POINTS,
    MAX_PRINT,
    call_entry,
    check_source,
    compile_module,
    load_module,
    make_signal,
)
from oodida.sandbox.results import check_result
from tests.sandbox.corpus import CorpusModule, load_corpus

ROOT = Path(__file__).resolve().parents[2]
CORPUS = load_corpus()
CANARY = "oodida-canary-policy-3b9e"
LEAK = Path("/tmp/oodida-leak")


def window(n: int = 100) -> dict[str, Any]:
    """A small realistic window: two signals, read-only float64 arrays."""
    t = np.arange(n, dtype=np.float64) * 0.1
    return {
        "SPEED": make_signal(t.copy(), 50.0 + 10.0 * np.sin(t)),
        "STEER_ANGLE": make_signal(t.copy(), 5.0 * np.cos(t)),
    }


def run(source: str, entry: str = "on_board", *args: Any, name: str = "m.py") -> Any:
    namespace = load_module(textwrap.dedent(source), name)
    if not args:
        args = {"on_board": (window(), {}, None), "off_board": ({}, {}, None), "migrate": (None,)}[entry]
    return call_entry(namespace, entry, *args)


def args_for(module: CorpusModule, w: dict[str, Any]) -> tuple[Any, ...]:
    return {"on_board": (w, {}, None), "off_board": ({"v1": {"n": 1}}, {}, None), "migrate": (None,)}[module.entry]


def by_stage(*stages: str, memory: bool | None = None) -> list[CorpusModule]:
    out = [m for m in CORPUS if m.expect_stage in stages]
    if memory is not None:
        out = [m for m in out if (m.expect_rule is Rule.MEMORY) == memory]
    return out


# --- the corpus ------------------------------------------------------------------------

# Every item the issue names, and the corpus files that cover it.
SPEC_ITEMS = {
    "class/mro/subclasses walks": ("class_dunder_walk", "type_builtin", "numpy_type_mro", "class_definition"),
    "str.format and string.Formatter": ("str_format_traversal", "str_format_map", "string_formatter"),
    "generator and traceback frame walks": ("generator_frame_walk", "traceback_frame_walk"),
    "exception attribute leaks": ("exception_context", "attributeerror_obj", "exception_args_objects"),
    "guard-name shadowing": ("shadow_getattr_guard", "shadow_import_hook", "shadow_print_collector"),
    "except*": ("except_star",),
    "imports by every route": ("import_os", "from_os_import", "dunder_import_call", "importlib",
                               "import_builtins", "builtins_subscript", "getattr_loader",
                               "sys_modules_via_facade", "from_numpy_submodule"),
    "open/eval/exec/compile": ("open_file", "_eval", "_exec", "_compile"),
    "module poisoning across calls": ("poison_math_direct", "poison_numpy_alias", "poison_check"),
    "numpy routes": ("numpy_ctypeslib", "array_ctypes", "array_tofile", "array_dump", "numpy_load",
                     "numpy_memmap", "numpy_frombuffer", "setflags_writable", "numpy_lib"),
    "infinite loops": ("infinite_loop",),
    "9**9**9": ("power_tower",),
    "memory bombs": ("memory_list", "memory_string", "bytearray", "memory_growth"),
    "deep recursion": ("deep_recursion",),
    "print floods": ("print_flood",),
    "huge or deeply nested results": ("huge_result", "deep_result"),
    "fork and thread bombs": ("fork_bomb", "thread_bomb"),
    "network exfiltration": ("socket_exfiltration",),
    "reading /proc": ("read_proc_environ",),
    "killing the parent": ("kill_parent",),
}


def test_the_corpus_is_big_enough_and_covers_every_item_of_the_issue():
    assert len(CORPUS) >= 34
    assert {m.expect_stage for m in CORPUS} == {"compile", "runtime", "killed", "ok"}
    names = [m.id for m in CORPUS]
    assert len(set(names)) == len(names)
    for item, fragments in SPEC_ITEMS.items():
        for fragment in fragments:
            assert any(fragment in name for name in names), f"{item}: no module named *{fragment}*"
    rules = {m.expect_rule for m in CORPUS}
    for rule in (Rule.FORBIDDEN_IMPORT, Rule.FORBIDDEN_ATTRIBUTE, Rule.FORBIDDEN_NAME, Rule.FORBIDDEN_SYNTAX,
                 Rule.DISALLOWED_RETURN, Rule.RESULT_TOO_LARGE, Rule.ERROR, Rule.MEMORY, Rule.TIMEOUT, Rule.CRASH):
        assert rule in rules, rule
    assert {m.entry for m in CORPUS} == set(ENTRY_POINTS)


@pytest.mark.parametrize("module", by_stage("compile"), ids=lambda m: m.id)
def test_refused_at_compile_with_its_rule_and_line(module):
    problems = check_source(module.source, module.path.name)
    assert module.expect_rule in {p.rule for p in problems}, problems
    assert all(p.line is not None for p in problems if p.rule is not Rule.MISSING_ENTRY), problems
    lines = module.source.count("\n") + 1
    assert all(1 <= p.line <= lines for p in problems if p.line is not None)
    with pytest.raises(PolicyError) as err:
        load_module(module.source, module.path.name)
    assert err.value.problems == problems


def assert_nothing_leaked(violation: Violation, module_file: str) -> None:
    """Text only: no chained exception, no frame of the module, no path, no secret."""
    assert violation.__context__ is None and violation.__cause__ is None
    tb = violation.__traceback__
    while tb is not None:
        assert tb.tb_frame.f_code.co_filename != module_file, "a frame of the module reached the caller"
        tb = tb.tb_next
    text = str(violation) + violation.message
    assert str(ROOT) not in text and "site-packages" not in text and 'File "' not in text
    assert CANARY not in text
    assert isinstance(violation.message, str) and violation.message
    assert not LEAK.exists()


@pytest.fixture
def canary(monkeypatch):
    monkeypatch.setenv("OODIDA_CANARY", CANARY)  # a secret in this process's environment
    LEAK.unlink(missing_ok=True)


@pytest.mark.parametrize("module", by_stage("runtime", memory=False), ids=lambda m: m.id)
def test_refused_at_run_time_with_its_rule_and_nothing_leaks(module, canary):
    assert check_source(module.source, module.path.name) == []
    namespace = load_module(module.source, module.path.name)
    w = window()
    speed = weakref.ref(w["SPEED"].v)
    with pytest.raises(Violation) as err:
        value = call_entry(namespace, module.entry, *args_for(module, w))
        check_result(value)  # the result rules: the worker checks every value so
    violation = err.value
    assert violation.rule is module.expect_rule, violation
    if violation.rule not in (Rule.DISALLOWED_RETURN, Rule.RESULT_TOO_LARGE):
        assert violation.line is not None  # where in the module
    assert_nothing_leaked(violation, module.path.name)
    # No traceback, frame or object of the module keeps the window alive.
    del w, err, violation
    value = None
    if speed() is not None:
        gc.collect()
    assert speed() is None, "the window is still referenced after the call"
    # and this process goes on: a good module runs right after.
    assert run("def on_board(window, params, state):\n    return len(window['SPEED'].v)\n") == 100


MEMORY_RUNNER = """
import json, resource, sys
sys.path.insert(0, {root!r})
import numpy as np
from oodida.sandbox import policy
from oodida.sandbox.errors import PolicyError, Violation
from tests.sandbox.corpus import load_corpus

size = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (size + 768 * 2**20, size + 768 * 2**20))
out = {{}}
for m in load_corpus():
    if m.id not in {ids!r}:
        continue
    t = np.arange(100.0)
    w = {{'SPEED': policy.make_signal(t.copy(), 50 + np.sin(t))}}
    try:
        ns = policy.load_module(m.source, m.path.name)
        policy.call_entry(ns, m.entry, w, {{}}, None)
        out[m.id] = ['ok', None, '', None]
    except Violation as e:
        out[m.id] = ['runtime', e.rule.value, e.message, e.line]
    except PolicyError as e:
        out[m.id] = ['compile', e.problems[0].rule.value, str(e), None]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def memory_outcomes() -> dict[str, list[Any]]:
    modules = by_stage("runtime", memory=True)
    script = MEMORY_RUNNER.format(root=str(ROOT), ids=[m.id for m in modules])
    env = {"PATH": os.environ.get("PATH", ""), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60,
                          env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("module", by_stage("runtime", memory=True), ids=lambda m: m.id)
def test_memory_bombs_are_refused_under_an_address_space_limit(module, memory_outcomes):
    stage, rule, message, line = memory_outcomes[module.id]
    assert (stage, rule) == ("runtime", Rule.MEMORY.value), memory_outcomes[module.id]
    assert line is not None and "MemoryError" in message


@pytest.mark.parametrize("module", by_stage("killed", "ok"), ids=lambda m: m.id)
def test_killed_and_ok_modules_get_past_the_policy(module):
    """The worker must be the one to stop these: the policy lets them load."""
    assert check_source(module.source, module.path.name) == []
    namespace = load_module(module.source, module.path.name)
    assert callable(namespace[module.entry])


def test_ok_modules_run_and_a_poisoning_attempt_reaches_no_other_module():
    """071/072 try to change what numpy and math are; 073 runs after them, in the
    same process, and finds them clean. The print floods stay bounded."""
    order = [m for m in CORPUS if m.id.startswith(("070", "071", "072", "073", "140", "141"))]
    outcomes = {}
    for m in order:
        try:
            namespace = load_module(m.source, m.path.name)
            outcomes[m.id] = call_entry(namespace, m.entry, *args_for(m, window()))
        except (PolicyError, Violation) as exc:
            outcomes[m.id] = type(exc).__name__
    assert outcomes["070_poison_math_direct"] == "PolicyError"
    assert outcomes["071_poison_numpy_alias"] == outcomes["072_poison_facade_function"] == "Violation"
    assert outcomes["073_poison_check"] == "clean"
    assert outcomes["140_print_flood"] == "survived"
    assert MAX_PRINT <= outcomes["141_print_huge_line"] < MAX_PRINT + 200  # kept, plus the note


# --- good modules ---------------------------------------------------------------------------

MEAN_SPEED = """
import numpy as np

def on_board(window, params, state):
    v = window['SPEED'].v
    return {'n': len(v), 'mean': float(np.mean(v))}

def off_board(results, params, state):
    total = sum(r['n'] for r in results.values())
    mean = sum(r['n'] * r['mean'] for r in results.values()) / total
    return {'vehicles': len(results), 'mean': mean, 'previous': state}
"""


def test_mean_speed_per_vehicle_and_the_fleet_mean_off_board():
    namespace = load_module(MEAN_SPEED, "mean.py")
    w = window()
    value = call_entry(namespace, "on_board", w, {}, None)
    assert value == {"n": 100, "mean": pytest.approx(float(np.mean(w["SPEED"].v)))}
    fleet = call_entry(namespace, "off_board", {"a": {"n": 100, "mean": 50.0}, "b": {"n": 300, "mean": 60.0}},
                       {}, {"mean": 1.0})
    assert fleet == {"vehicles": 2, "mean": pytest.approx(57.5), "previous": {"mean": 1.0}}
    assert check_result(fleet) == (fleet, [])


def test_a_histogram_with_the_facade():
    value = run("""
        import numpy as np

        def on_board(window, params, state):
            counts, edges = np.histogram(window['SPEED'].v, bins=params['bins'], range=(0.0, 100.0))
            return {'counts': counts, 'edges': edges}
    """, "on_board", window(), {"bins": 10}, None)
    counts, edges = np.histogram(window()["SPEED"].v, bins=10, range=(0.0, 100.0))
    assert np.array_equal(value["counts"], counts) and np.array_equal(value["edges"], edges)
    checked, flags = check_result(value)
    assert flags == [] and checked["counts"].dtype == np.int64


KMEANS = """
import numpy as np

def on_board(window, params, state):
    x = window['SPEED'].v
    k = params.get('k', 2)
    if state is None:
        centers = np.linspace(np.min(x), np.max(x), k)
    else:
        centers = np.array(state['centers'], dtype=np.float64)
    labels = np.zeros(len(x), dtype=np.int64)
    for _ in range(20):
        distances = np.abs(x[:, None] - centers[None, :])
        labels = np.argmin(distances, axis=1)
        new = np.zeros(k)
        for j in range(k):
            members = x[labels == j]
            new[j] = np.mean(members) if len(members) else centers[j]
        if np.all(new == centers):
            break
        centers = new
    counts = np.bincount(labels, minlength=k)
    return {'centers': centers.tolist(), 'counts': [int(c) for c in counts]}
"""


def test_a_k_means_loop_with_item_writes_into_its_own_arrays():
    value = run(KMEANS, "on_board", window(), {"k": 2}, None)
    assert sum(value["counts"]) == 100
    low, high = value["centers"]
    assert 40.0 <= low < 50.0 < high <= 60.0
    again = run(KMEANS, "on_board", window(), {"k": 2}, {"centers": value["centers"]})
    assert again["centers"] == pytest.approx(value["centers"])


def test_imports_as_analysts_write_them():
    value = run("""
        import math
        import numpy as np
        import statistics as stats
        from math import sqrt, pi
        from numpy import mean as avg

        def on_board(window, params, state):
            v = window['SPEED'].v
            return [sqrt(16.0), round(pi, 2), math.floor(2.5), float(avg(v)) == float(np.mean(v)),
                    stats.median([3, 1, 2]), float(np.norm(np.array([3.0, 4.0])))]
    """)
    assert value == [4.0, 3.14, 2, True, 2, 5.0]


def test_everyday_python_works():
    value = run("""
        LIMIT = 55.0
        calls = 0

        def over(v, limit=LIMIT):
            return [x for x in v if x > limit]

        def on_board(window, params, state):
            global calls
            calls = calls + 1
            names = sorted(window, key=lambda s: len(s))
            a, (b, c) = 1, (2, 3)
            pairs = {k: len(s.v) for k, s in window.items()}
            total = 0
            for i, x in enumerate(window['SPEED'].v[:5]):
                total += x
            try:
                {}['missing']
            except KeyError as e:
                missing = str(e)
            flags = any(x > 1e6 for x in window['SPEED'].v)
            text = f"{total:.1f} {names[0]!r}"
            return {'calls': calls, 'abc': (a, b, c), 'pairs': pairs, 'over': len(over(window['SPEED'].v)),
                    'missing': missing, 'flags': flags, 'text': text, 'args': list(zip(range(2), 'ab')),
                    'bytes': bytes([104, 105]), 'divmod': divmod(7, 2), 'pow': pow(2, 10)}
    """)
    assert value["calls"] == 1 and value["abc"] == (1, 2, 3)
    assert value["pairs"] == {"SPEED": 100, "STEER_ANGLE": 100}
    assert value["missing"] == "'missing'" and value["flags"] is False
    assert value["text"].endswith("'SPEED'") and value["bytes"] == b"hi"
    assert value["args"] == [(0, "a"), (1, "b")] and value["divmod"] == (3, 1) and value["pow"] == 1024


def test_module_state_stays_in_its_own_module_across_calls():
    source = "n = []\n\ndef on_board(window, params, state):\n    n.append(1)\n    return len(n)\n"
    one, two = load_module(source, "one.py"), load_module(source, "two.py")
    assert [call_entry(one, "on_board", {}, {}, None) for _ in range(3)] == [1, 2, 3]
    assert call_entry(two, "on_board", {}, {}, None) == 1
    assert one["__sandbox_facades__"] is not two["__sandbox_facades__"]
    assert one["__builtins__"] is not two["__builtins__"]


def test_migrate_and_off_board_are_entry_points_too():
    value = run("""
        def off_board(results, params, state):
            return {'n': len(results)}

        def migrate(old_state):
            return {'version': 2, 'old': old_state}
    """, "migrate", {"version": 1})
    assert value == {"version": 2, "old": {"version": 1}}


def test_print_works_is_bounded_and_readable_through_printed():
    namespace = load_module(
        "def on_board(window, params, state):\n"
        "    print('hello', params['n'])\n"
        "    for i in range(params['flood']):\n"
        "        print('x' * 99)\n"
        "    return printed\n", "p.py")
    assert call_entry(namespace, "on_board", {}, {"n": 1, "flood": 0}, None) == "hello 1\n"
    flooded = call_entry(namespace, "on_board", {}, {"n": 2, "flood": 10_000}, None)
    assert flooded.startswith("hello 2\n") and len(flooded) < MAX_PRINT + 100
    assert "more characters of output not kept" in flooded
    # the budget is per call: the next call prints again
    assert call_entry(namespace, "on_board", {}, {"n": 3, "flood": 0}, None) == "hello 3\n"


# --- compile-time checks ---------------------------------------------------------------------


def problems_of(source: str) -> list[tuple[Rule, int | None]]:
    return [(p.rule, p.line) for p in check_source(textwrap.dedent(source))]


def test_every_problem_is_listed_with_its_line():
    found = problems_of("""
        import os
        import numpy as np

        def on_board(window, params, state):
            x = np.load('f')
            y = window.__class__
            z = open('/etc/passwd')
            return x.tofile('g')
    """)
    assert found == [
        (Rule.FORBIDDEN_IMPORT, 2), (Rule.FORBIDDEN_ATTRIBUTE, 6), (Rule.FORBIDDEN_ATTRIBUTE, 7),
        (Rule.FORBIDDEN_NAME, 8), (Rule.FORBIDDEN_ATTRIBUTE, 9),
    ]


@pytest.mark.parametrize("source, expected", [
    ("def on_board(window, params, state)\n    return 1\n", [(Rule.SYNTAX, 1)]),
    ("def on_board(window, params, state):\nreturn 1\n", [(Rule.SYNTAX, 2)]),
    ("x = 1\n", [(Rule.MISSING_ENTRY, None)]),
    ("def migrate(old_state):\n    return old_state\n", [(Rule.MISSING_ENTRY, None)]),
    ("def on_board(window, params):\n    return 1\n", [(Rule.MISSING_ENTRY, 1)]),
    ("def off_board(results, params, state, extra):\n    return 1\n", [(Rule.MISSING_ENTRY, 1)]),
    ("def on_board(w, p, s, *, required):\n    return 1\n", [(Rule.MISSING_ENTRY, 1)]),
    ("def on_board(w, p, s):\n    return 1\ndef migrate():\n    return 1\n", [(Rule.MISSING_ENTRY, 3)]),
    ("def on_board(w, p, s=None, extra=1):\n    return 1\n", []),
    ("def on_board(*args):\n    return 1\n", []),
    ("on_board = lambda w, p, s: 1\n", []),
    ("on_board = lambda w: 1\n", [(Rule.MISSING_ENTRY, 1)]),
    ("def on_board(w, p, s):\n    type = p['type']\n    format = 'csv'\n    return type, format\n", []),
    ("def on_board(w, p, s):\n    return '{}'.format(1)\n", [(Rule.FORBIDDEN_ATTRIBUTE, 2)]),
    ("def on_board(w, p, s):\n    return f'{s!r:>10}'\n", []),
    ("from numpy import mean, load\ndef on_board(w, p, s):\n    return 1\n", [(Rule.FORBIDDEN_IMPORT, 1)]),
    ("import numpy as np\nnp = {}\ndef on_board(w, p, s):\n    return np.load\n", []),  # np is not numpy here
    ("import math\ndef on_board(w, p, s):\n    del math.pi\n", [(Rule.FORBIDDEN_ATTRIBUTE, 3)]),
    ("def on_board(w, p, s):\n    x = 1\n    def f():\n        nonlocal x\n    return 1\n",
     [(Rule.FORBIDDEN_SYNTAX, 4)]),
    ("def on_board(w, p, s):\n    return '\\d'\n", []),  # an invalid escape warns in CPython: not a refusal
])
def test_what_the_compile_check_says(source, expected):
    assert problems_of(source) == expected


def test_sources_that_break_the_parser_are_problems_not_crashes():
    for source in ("x = " + "(" * 300 + ")" * 300 + "\n", "x = " + "-" * 200_000 + "1\n", "a\x00b\n",
                   "def on_board(w, p, s):\n\treturn 1\n        return 2\n"):
        problems = check_source(source)
        assert problems and problems[0].rule is Rule.SYNTAX, problems
    with pytest.raises(PolicyError):
        compile_module("a\x00b")
    assert check_source(b"def on_board(w, p, s): pass")[0].rule is Rule.SYNTAX  # type: ignore[arg-type]


def test_compile_module_gives_restricted_code():
    code = compile_module(MEAN_SPEED, "mean.py")
    assert code.co_filename == "mean.py"

    def names(c: Any) -> set[str]:
        return set(c.co_names).union(*(names(k) for k in c.co_consts if hasattr(k, "co_names")))

    assert {"_getattr_", "_getitem_", "_getiter_"} <= names(code)  # every access goes through a guard


@given(st.text(max_size=200))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_text_gets_a_list_of_problems_never_an_exception(text):
    problems = check_source(text)
    assert isinstance(problems, list) and all(isinstance(p, Problem) for p in problems)


@given(st.lists(st.sampled_from([
    "import os\n", "import numpy as np\n", "x = np.load\n", "y = open\n", "z = ().__class__\n",
    "class A: pass\n", "def on_board(w, p, s):\n    return 1\n", "def off_board(r, p, s):\n    return r\n",
    "q = '{}'.format\n", "from math import sqrt\n", "w = [i for i in range(3)]\n",
    "try:\n    pass\nexcept* E:\n    pass\n",
]), max_size=8))
@settings(max_examples=100, deadline=None)
def test_a_module_loads_exactly_when_the_check_finds_nothing(lines):
    source = "".join(lines)
    problems = check_source(source)
    if problems:
        with pytest.raises(PolicyError):
            compile_module(source)
    else:
        try:
            namespace = load_module(source)
        except Violation as exc:  # top-level code may fail as it runs (np used before import)
            assert exc.rule is Rule.ERROR and exc.line is not None
        else:
            assert any(e in namespace for e in ("on_board", "off_board"))


# --- the run-time guards ------------------------------------------------------------------------


def violation_of(source: str, *args: Any, entry: str = "on_board") -> Violation:
    with pytest.raises(Violation) as err:
        run(source, entry, *args)
    return err.value


def test_errors_become_violations_with_the_line_of_the_module():
    v = violation_of("def on_board(window, params, state):\n    x = 1\n    return x / 0\n")
    assert (v.rule, v.message, v.line) == (Rule.ERROR, "ZeroDivisionError: division by zero", 3)
    v = violation_of("import numpy as np\ndef on_board(window, params, state):\n    return np.mean(params['x'])\n",
                     {}, {}, None)
    assert v.rule is Rule.ERROR and v.message.startswith("KeyError") and v.line == 3
    v = violation_of("def on_board(w, p, s):\n    def down(n):\n        return down(n + 1)\n    return down(0)\n")
    assert (v.rule, v.message, v.line) == (Rule.ERROR, "RecursionError: recursion too deep", 3)
    v = violation_of("def on_board(w, p, s):\n    raise MemoryError\n")
    assert v.rule is Rule.MEMORY
    v = violation_of("def on_board(w, p, s):\n    return undefined_name\n")
    assert v.rule is Rule.ERROR and "undefined_name" in v.message
    v = violation_of("def on_board(w, p, s):\n    raise ValueError(10 ** 5000)\n")
    assert v.rule is Rule.ERROR and len(v.message) < 3000
    v = violation_of("def on_board(w, p, s):\n    raise ValueError([0] * 10 ** 6, {'k': 'x' * 10 ** 6})\n")
    assert v.rule is Rule.ERROR and v.message.startswith("ValueError: [0, 0,") and len(v.message) < 1000


def test_a_breach_while_the_module_loads_is_a_violation():
    with pytest.raises(Violation) as err:
        load_module("x = 1 / 0\n\ndef on_board(w, p, s):\n    return x\n", "top.py")
    assert (err.value.rule, err.value.line) == (Rule.ERROR, 1)
    assert err.value.__context__ is None
    with pytest.raises(Violation) as err:
        load_module("import math\nm = [math][0]\nm.pi = 3\n\ndef on_board(w, p, s):\n    return 1\n", "top.py")
    assert (err.value.rule, err.value.line) == (Rule.FORBIDDEN_ATTRIBUTE, 3)


def test_call_entry_refuses_what_is_not_an_entry_point():
    namespace = load_module("import numpy as np\non_board = np.mean\ndef helper():\n    return 1\n"
                            "def off_board(r, p, s):\n    return 1\n")
    for entry in ("on_board", "helper", "migrate", "__import__"):
        with pytest.raises(Violation) as err:
            call_entry(namespace, entry, 1, 2, 3)
        assert err.value.rule is Rule.MISSING_ENTRY


def test_getattr_guard():
    g = policy.guarded_getattr
    for obj, name in [((), "__class__"), ("x", "format"), ("x", "format_map"), (np.zeros(1), "ctypes"),
                      (np.zeros(1), "base"), (np.zeros(1), "data"), (np.zeros(1), "tofile"),
                      (np.zeros(1), "setflags"), (np.float64, "mro"), (sys, "modules"), (g, "func_globals"),
                      (ValueError("x"), "with_traceback"), (AttributeError("x", obj=1), "obj")]:
        with pytest.raises(policy.ForbiddenAttribute):
            g(obj, name)
    with pytest.raises(TypeError):
        g({}, 1)
    assert g(ValueError("a", 1, window(), [1]), "args") == ("a", 1, "<dict>", "<list>")
    assert g(np.arange(3.0), "shape") == (3,)
    assert g(np.arange(3.0), "sum")() == 3.0
    assert isinstance(g(np.arange(3.0), "astype"), Guarded)


def test_array_methods_are_wrapped_like_facade_functions():
    a = np.arange(4.0)
    for call in (lambda: policy.guarded_getattr(a, "astype")("O"), lambda: policy.guarded_getattr(a, "astype")(str),
                 lambda: policy.guarded_getattr(a, "astype")(dtype="M8[s]"),
                 lambda: policy.guarded_getattr(a, "view")("V8"),
                 lambda: policy.guarded_getattr(a, "sum")(out=np.zeros(())),
                 lambda: policy.guarded_getattr(a, "tolist")(out=1)):
        with pytest.raises((ValueError, TypeError)):
            call()
    assert policy.guarded_getattr(a, "astype")(np.float32).dtype == np.float32
    assert policy.guarded_getattr(a, "view")(np.int64).dtype == np.int64


def test_write_guard():
    w = policy.guarded_write
    d, lst = {}, []
    assert w(d) is d and w(lst) is lst
    arr = np.zeros(3)
    w(arr)[1] = 5.0
    assert arr[1] == 5.0
    with pytest.raises(policy.ForbiddenAttribute):
        w(arr).shape = (3, 1)
    frozen = window()["SPEED"].v
    with pytest.raises(ValueError, match="read-only"):
        w(frozen)[0] = 1.0
    for target in (frozen.flags, FACADES["math"](), window()["SPEED"], ValueError("x"), lambda: 1):
        with pytest.raises(policy.ForbiddenAttribute):
            w(target).anything = 1
        with pytest.raises((policy.ForbiddenWrite, TypeError)):
            w(target)["k"] = 1


def test_the_import_hook_hands_out_facades_only():
    namespace = load_module("import numpy as np\nimport math\ndef on_board(w, p, s):\n    return np, math\n")
    np_facade, math_facade = call_entry(namespace, "on_board", {}, {}, None)
    assert isinstance(np_facade, Facade) and isinstance(math_facade, Facade)
    hook = namespace["__builtins__"]["__import__"]
    for name in ("os", "sys", "numpy.ctypeslib", "ctypes", "importlib", "builtins", "string"):
        with pytest.raises(policy.ForbiddenImport):
            hook(name, namespace, None, (), 0)
    with pytest.raises(policy.ForbiddenImport):
        hook("numpy", namespace, None, (), 1)  # relative


def test_from_numpy_import_cannot_fall_back_to_sys_modules():
    """CPython's IMPORT_FROM looks up sys.modules[f'{module.__name__}.{name}'] when
    the attribute is missing: the facade has no __name__, so nothing is found. Run
    unchecked, to see the run-time layer alone."""
    from RestrictedPython import compile_restricted_exec

    for name in ("ctypeslib", "lib", "linalg", "random", "testing", "_core"):
        code = compile_restricted_exec(f"from numpy import {name} as got\n").code
        if code is None:  # RestrictedPython refuses the underscore name itself
            continue
        namespace = policy.make_globals("m")
        with pytest.raises(ImportError):
            exec(code, namespace)  # noqa: S102
        assert "got" not in namespace


def test_facades_are_read_only_and_offer_no_way_out():
    numpy = FACADES["numpy"]()
    for attempt in (lambda: setattr(numpy, "mean", 1), lambda: delattr(numpy, "mean"),
                    lambda: setattr(numpy.mean, "x", 1), lambda: setattr(FACADES["math"](), "pi", 3)):
        with pytest.raises(AttributeError):
            attempt()
    for name in ("__name__", "__path__", "__spec__", "__loader__", "__file__", "__dict__"):
        with pytest.raises(AttributeError):
            getattr(numpy, name)
    members = FACADE_MEMBERS["numpy"]
    for absent in ("load", "save", "savez", "loadtxt", "fromfile", "tofile", "memmap", "ctypeslib", "frombuffer",
                   "lib", "testing", "f2py", "distutils", "ndarray", "core", "_core", "sys", "os", "dtype",
                   "set_printoptions", "seterr", "random", "empty_like", "frompyfunc", "vectorize"):
        assert absent not in members, absent
    assert ALLOWED_IMPORTS == frozenset({"math", "numpy", "statistics"})
    assert np.array_equal(numpy.empty(3), np.zeros(3))  # never uninitialised memory


@pytest.mark.parametrize("call, refused", [
    (lambda n: n.array([1, 2], dtype=object), "dtype object"),
    (lambda n: n.array([1, 2], "O"), "dtype object"),
    (lambda n: n.zeros(3, "U4"), "dtype <U4"),
    (lambda n: n.full(3, "x"), "<U1"),
    (lambda n: n.asarray([b"x"]), "|S1"),
    (lambda n: n.array([(1, 2)], dtype="i4,i4"), "dtype"),
    (lambda n: n.array(["2020-01-01"], dtype="M8[D]"), "dtype datetime64"),
    (lambda n: n.sqrt(np.ones(2), out=np.zeros(2)), "'out'"),
    (lambda n: n.sqrt(np.ones(2), np.zeros(2)), "positional"),
    (lambda n: n.sum(np.ones(2), 0, None, np.zeros(())), "positional"),
    (lambda n: n.sqrt(np.ones(2), where=np.ones(2, bool)), "'where'"),
    (lambda n: n.asarray([1], like=np.ones(1)), "'like'"),
    (lambda n: n.clip(np.ones(2), 0, 1, np.zeros(2)), "positional"),
    (lambda n: n.mean(np.ones(2), out=np.zeros(())), "'out'"),
])
def test_numpy_facade_refuses_non_numeric_dtypes_and_output_arguments(call, refused):
    with pytest.raises(ValueError) as err:
        call(FACADES["numpy"]())
    assert refused in str(err.value)


def test_numpy_facade_computes_like_numpy():
    n = FACADES["numpy"]()
    x = np.array([3.0, 1.0, 2.0, np.nan])
    assert float(n.nanmean(x)) == 2.0 and float(n.nanmax(x)) == 3.0
    assert np.array_equal(n.sort(x[:3]), [1.0, 2.0, 3.0])
    values, counts = n.unique(np.array([1, 1, 2]), return_counts=True)
    assert values.tolist() == [1, 2] and counts.tolist() == [2, 1]
    assert n.percentile(np.arange(101.0), 50) == 50.0
    assert n.interp(1.5, [1.0, 2.0], [10.0, 20.0]) == 15.0
    assert n.polyfit(np.arange(5.0), 2 * np.arange(5.0) + 1, 1) == pytest.approx([2.0, 1.0])
    assert n.sum(np.ones(3), where=np.array([True, False, True])) == 2.0  # reductions keep where=
    assert n.array([1, 2], dtype=n.float64).dtype == np.float64


def test_signals_are_read_only():
    t = np.arange(5.0)
    s = make_signal(t, t * 2)
    assert s.t is t and not s.t.flags.writeable and not s.v.flags.writeable  # frozen in place, no copy
    assert len(s) == 5 and repr(s) == "Signal(5 samples)"
    with pytest.raises(AttributeError):
        s.v = np.zeros(5)
    with pytest.raises(AttributeError):
        s.other = 1
    with pytest.raises(ValueError):
        s.v[0] = 1.0
    converted = make_signal([0, 1, 2], np.arange(3, dtype=np.int32))
    assert converted.v.dtype == np.float64 and not converted.v.flags.writeable
    with pytest.raises(ValueError):
        make_signal(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError):
        make_signal(np.zeros(2), np.zeros(3))


# --- oodida check -------------------------------------------------------------------------------


def test_check_file_lists_every_problem_one_per_line(tmp_path):
    mine = tmp_path / "mine.py"
    mine.write_text("import os\nimport numpy as np\n\ndef on_board(window, params, state):\n"
                    "    return np.load(os.path.join('a', 'b'))\n")
    problems = check_file(mine)
    assert format_problems("mine.py", problems).splitlines() == [
        "mine.py:1: forbidden import: os is not allowed (allowed: math, numpy, statistics)",
        "mine.py:5: forbidden attribute: numpy.load is not available in the sandbox",
    ]
    (tmp_path / "empty.py").write_text("")
    assert format_problems("empty.py", check_file(tmp_path / "empty.py")).startswith("empty.py: missing entry point:")
    (tmp_path / "good.py").write_text(MEAN_SPEED)
    assert check_file(tmp_path / "good.py") == []
    (tmp_path / "latin1.py").write_bytes(b"x = 1\n# caf\xe9\n")
    assert [(p.rule, p.line) for p in check_file(tmp_path / "latin1.py")] == [(Rule.SYNTAX, 2)]
    assert check_file(tmp_path / "absent.py")[0].rule is Rule.SYNTAX
