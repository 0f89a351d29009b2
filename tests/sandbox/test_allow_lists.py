"""The sandbox's allow-listed surface: every facade function and every array and
scalar method within its keyword allow-list, the same through a type as through an
instance; the check's budget and its refusals within the protocol's limits; what a
deploy refuses from the text alone; and `oodida check --allowed`, generated from
the same tables."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oodida.sandbox import facade, policy
from oodida.sandbox.check import allowed_text, check_file, summarise
from oodida.sandbox.errors import Rule, Violation
from oodida.sandbox.policy import call_entry, check_source, load_module, make_signal
from oodida.sandbox.results import check_result
from tests.sandbox.corpus import load_corpus

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ROOT / "tests" / "sandbox" / "hostile"
CORPUS = load_corpus()


def window() -> dict[str, Any]:
    t = np.arange(100, dtype=np.float64) * 0.1
    return {"SPEED": make_signal(t.copy(), 50.0 + 10.0 * np.sin(t))}


def run(source: str, params: Any = None) -> Any:
    namespace = load_module(textwrap.dedent(source), "m.py")
    return call_entry(namespace, "on_board", window(), params or {}, None)


def outcome(name: str) -> tuple[str, Any]:
    """("ok", value) or (rule, message) of one corpus module, run in-process."""
    source = (HOSTILE / name).read_text()
    try:
        value = call_entry(load_module(source, name), "on_board", window(), {}, None)
        return "ok", check_result(value)[0]  # what the worker sends back, or the rule it refuses
    except Violation as exc:
        return exc.rule.value, exc.message


# --- the new corpus modules, each with its exact outcome -----------------------------------

EXACT = {
    "211_method_where_uninitialised.py": ("error", "ValueError: ndarray.clip: keyword argument 'where' is not allowed "
                                          "in the sandbox (allowed: max, min)"),
    "212_type_method_astype_bytes.py": ("error", "ValueError: float64.astype: dtype |S8 is not allowed in the sandbox "
                                        "(numeric dtypes only)"),
    "213_type_method_clip_where.py": ("error", "ValueError: float64.clip: keyword argument 'where' is not allowed in "
                                      "the sandbox (allowed: max, min)"),
    "214_type_method_positional_out.py": ("error", "ValueError: float64.round takes at most 2 positional arguments in "
                                          "the sandbox (no out argument: functions return new arrays)"),
    "215_type_via_dtype_type.py": ("error", "ValueError: float64.astype: dtype <U8 is not allowed in the sandbox "
                                   "(numeric dtypes only)"),
    "216_method_not_listed.py": ("forbidden attribute", ".resize is not available in the sandbox (oodida check "
                                 "--allowed lists the array methods that are)"),
    "217_method_unknown_keyword.py": ("error", "ValueError: ndarray.astype: keyword argument 'subok' is not allowed in "
                                      "the sandbox (allowed: casting, copy, dtype, order)"),
    "218_facade_keyword_not_listed.py": ("error", "ValueError: numpy.clip: keyword argument 'where' is not allowed in "
                                         "the sandbox (allowed: a_max, a_min, max, min)"),
    "219_where_one_argument.py": ("error", "ValueError: numpy.where takes at least 3 positional arguments in the "
                                  "sandbox"),
    "220_reduction_where_is_initialised.py": ("ok", [35.0, 35.0, 9.0, 7.0]),
    "224_control_characters_returned.py": ("ok", {"\x1b[2J\nCRITICAL x": "\n\x1b[31mforged\r", "ok": "\u202eevil"}),
    "225_control_characters_raised.py": ("error", "ValueError: \x1b[2J\n2026-01-01 00:00:00,000 CRITICAL server: "
                                         "forged record"),
    "226_generator_entry.py": ("disallowed return type", None),
    "228_longdouble_padding.py": ("error", "ValueError: ndarray.astype: dtype float128 is not allowed in the sandbox "
                                  "(extended precision leaves padding bytes uninitialised; use float64)"),
    "229_longdouble_by_facade.py": ("error", "ValueError: numpy.ones: dtype float128 is not allowed in the sandbox "
                                    "(extended precision leaves padding bytes uninitialised; use float64)"),
    "227_return_lambda.py": ("disallowed return type", None),
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_each_new_hostile_module_has_its_exact_outcome(name):
    rule, message = EXACT[name]
    got_rule, got = outcome(name)
    assert got_rule == rule, got
    if message is not None:
        assert got == message
    # what the module says is data: kept as it is here, escaped wherever it is shown
    # (tests/server/test_inert_text.py)


def test_the_quadratic_and_huge_modules_are_refused_with_their_exact_problems():
    problems = check_source((HOSTILE / "221_quadratic_check_underscores.py").read_text())
    assert len(problems) == policy.MAX_PROBLEMS == 50
    assert all(p.rule is Rule.FORBIDDEN_NAME for p in problems)
    assert [p.line for p in problems[:49]] == list(range(6, 55))
    assert problems[-1].message == "and 4,951 more problems (forbidden name)" and problems[-1].line == 55
    lines = check_source((HOSTILE / "222_huge_module_lines.py").read_text())
    assert [(p.rule, p.line) for p in lines] == [(Rule.MODULE_TOO_LARGE, 10_001)]
    assert lines[0].message == ("the module has 10,005 lines; the sandbox checks modules of at most 10,000 "
                                "(split it, or move data into params)")
    nodes = check_source((HOSTILE / "223_huge_module_nodes.py").read_text())
    assert [(p.rule, p.line) for p in nodes] == [(Rule.MODULE_TOO_LARGE, 6)]
    assert "more than 50,000 syntax nodes" in nodes[0].message


def test_the_issues_250_kb_module_is_refused_before_it_is_parsed():
    source = "def on_board(window, params, state):\n    return 1\n" + "_a=1\n" * 40_000 + "x = 1" * 10_000
    assert len(source) > 250_000
    [problem] = check_source(source)
    assert problem.rule is Rule.MODULE_TOO_LARGE and problem.line is not None
    over = "x = 1\n" * 2 + "y = 'a'\n" * 0 + "z = '" + "a" * policy.MAX_SOURCE_CHARS + "'\n"
    [problem] = check_source(over)
    assert problem.rule is Rule.MODULE_TOO_LARGE and "characters" in problem.message


# --- the tables: allow-lists that match numpy ----------------------------------------------


def test_every_facade_function_has_an_allow_list_that_numpy_agrees_with():
    for name, guarded in facade.NUMPY_GUARDED.items():
        fn = object.__getattribute__(guarded, "_fn")
        spec = object.__getattribute__(guarded, "_spec")
        assert type(spec.keywords) is frozenset, name
        assert not spec.keywords & {"out", "like", "subok", "device", "overwrite_input"}, name
        if isinstance(fn, np.ufunc):
            assert spec.keywords == {"dtype"} and spec.max_positional == fn.nin, name  # no where=, no out
            continue
        params = inspect.signature(fn).parameters
        named = {p.name for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        assert spec.keywords <= named, (name, spec.keywords - named)
        positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if spec.max_positional is not None:
            assert spec.max_positional <= len(positional), name
            assert "out" not in [p.name for p in positional[: spec.max_positional]], name
        if spec.dtype_position is not None:
            assert positional[spec.dtype_position].name == "dtype", name
        if "where" in spec.keywords:  # only reductions, which fill what where= skips
            assert name in {"all", "any", "max", "min", "mean", "std", "sum", "var", "prod", "nanmax", "nanmin",
                            "nanmean", "nanstd", "nansum", "nanvar"}, name


def test_every_method_in_the_allow_list_exists_and_where_is_only_on_reductions():
    instances = (np.ones((2, 2)), np.float64(1.0), np.int64(1))
    for name, spec in facade.METHOD_SPECS.items():
        assert any(hasattr(x, name) for x in instances), name
        assert not spec.keywords & {"out", "like", "subok", "device"}, name
        if "where" in spec.keywords:
            assert name in {"all", "any", "max", "min", "mean", "std", "sum", "var", "prod"}, name
    for refused in ("resize", "choose", "getfield", "setfield", "setflags", "tofile", "dump", "dumps", "to_device"):
        assert refused not in facade.METHOD_SPECS


@pytest.mark.parametrize("expr", [
    "np.ones(4).clip(0.0, 1.0, where=np.zeros(4) > 1)",
    "np.ones(4).clip(0.0, 1.0, np.zeros(4))",  # out by position
    "np.ones(4).sum(0, None, np.zeros(()))",
    "np.ones(4).round(1, np.zeros(4))",
    "np.ones(4).astype('S8')",
    "np.ones(4).astype(dtype='U8')",
    "np.ones(4).view('V8')",
    "np.ones(4).mean(out=np.zeros(()))",
    "np.ones(4).cumsum(0, 'O')",
    "np.float64(1).astype('O')",
    "np.float64.astype(np.float64(1), 'S8')",
    "np.float64.astype(np.float64(1), dtype='O')",
    "np.float64.clip(np.float64(1), 0, 1, where=False)",
    "np.float64.clip(np.float64(1), 0, 1, np.zeros(()))",
    "np.int64.view(np.int64(1), 'M8[s]')",
    "np.bool_.astype(np.bool_(True), 'T')",
    "np.uint8.round(np.uint8(1), 0, np.zeros(()))",
    "np.float64.astype(np.float64(1))",  # fewer than the instance: refused by numpy itself
    "np.where(np.ones(3) > 0)",
    "np.where(np.ones(3) > 0, 1)",
    "np.sqrt(np.ones(3), where=np.ones(3) > 0)",
    "np.zeros_like(np.ones(3), subok=True)",
    "np.median(np.ones(3), overwrite_input=True)",
    "np.sum(np.ones(3), where=np.ones(3) > 0, out=np.zeros(()))",
    "np.arange(3, device='cpu')",
    "np.convolve(np.ones(3), np.ones(3), method='direct')",
    "np.ones(3).astype('g')",
    "np.zeros(32, dtype=np.uint8).view('g')",
    "np.zeros(4, np.uint8).view(dtype='G')",
    "np.sqrt(np.ones(3), dtype='g')",
    "np.array([1.0], 'float128')",
    "np.float64.astype(np.float64(1), 'g')",
])
def test_every_route_to_uninitialised_or_foreign_memory_is_refused(expr):
    with pytest.raises(Violation) as err:
        run(f"import numpy as np\ndef on_board(window, params, state):\n    return {expr}\n")
    assert err.value.rule in (Rule.ERROR, Rule.FORBIDDEN_ATTRIBUTE), err.value


def test_the_array_functions_analysts_reach_for_first_work_in_the_sandbox():
    value = run("""
        import numpy as np
        def on_board(window, params, state):
            v = window['SPEED'].v
            t = window['SPEED'].t
            return {
                'convolve': np.convolve(v, np.ones(5) / 5, mode='valid').tolist()[:3],
                'cumsum': float(np.cumsum(v)[-1]), 'diff': float(np.diff(v, n=2)[0]),
                'gradient': float(np.gradient(v, t)[1]), 'interp': float(np.interp(0.35, t, v)),
                'percentile': float(np.percentile(v, 90, method='linear')), 'sort': float(np.sort(v)[0]),
                'argsort': int(np.argsort(v, kind='stable')[0]), 'where': np.where(v > 55, 1.0, 0.0).tolist()[:5],
                'nanpercentile': float(np.nanpercentile(v, 10)), 'trapezoid': float(np.trapezoid(v, t)),
                'ptp': float(np.ptp(v)), 'digitize': np.digitize(v[:3], [50.0, 55.0]).tolist(),
                'method_sum': float(v.sum(where=v > 55)), 'scalar': float(np.float64(2.5).round(0)),
                'type_route': float(np.float64.astype(np.float64(2.5), np.float32)),
                'empty': np.empty(3).tolist(),
            }
    """)
    t = np.arange(100, dtype=np.float64) * 0.1
    v = 50.0 + 10.0 * np.sin(t)
    assert value["convolve"] == np.convolve(v, np.ones(5) / 5, mode="valid").tolist()[:3]
    assert value["gradient"] == float(np.gradient(v, t)[1])
    assert value["percentile"] == float(np.percentile(v, 90))
    assert value["where"] == np.where(v > 55, 1.0, 0.0).tolist()[:5]
    assert value["method_sum"] == pytest.approx(float(v[v > 55].sum()), rel=1e-15)
    assert value["type_route"] == 2.5 and value["scalar"] == 2.0
    assert value["empty"] == [0.0, 0.0, 0.0]  # np.empty is np.zeros in the sandbox


# --- refusals within the protocol's limits ---------------------------------------------------


def test_a_long_refusal_is_cut_with_and_n_more_and_fits_4096_characters():
    lines = [f"m.py: line {i}: forbidden name: \"_a\" is an invalid variable name" for i in range(5000)]
    text = summarise("the module breaks the sandbox policy:", lines)
    assert len(text) <= 4000
    kept = text.splitlines()[1:-1]
    assert kept == lines[: len(kept)] and len(kept) > 10
    assert text.splitlines()[-1] == f"... and {5000 - len(kept)} more"
    assert summarise("head:", ["a", "b"]) == "head:\na\nb"
    assert len(summarise("head:", ["x" * 10_000] * 3)) <= 4000


# --- what a deploy refuses from the text alone ------------------------------------------------


@pytest.mark.parametrize("module", CORPUS, ids=lambda m: m.id)
def test_the_deploy_check_refuses_what_the_first_call_would_and_nothing_else(module):
    at_load = check_source(module.source, module.path.name)
    extra = [p for p in check_source(module.source, module.path.name, returns=True) if p not in at_load]
    if module.deploy_rule is not None:
        assert module.deploy_rule is module.expect_rule  # the run-time check agrees
        assert extra and {p.rule for p in extra} == {module.deploy_rule}, extra
        assert all(p.line is not None for p in extra)
    else:  # sound: no module that could run and return plain data is refused at deploy
        assert not extra, extra


@pytest.mark.parametrize("source", [
    "import numpy as np\ndef on_board(w, p, s):\n    return np.clip(w, 0, 1, where=w)\n",
    "from numpy import sqrt\ndef on_board(w, p, s):\n    return sqrt(w, w)\n",
    "import numpy as n2\ndef on_board(w, p, s):\n    return n2.where(w)\n",
    "import numpy as np\ndef on_board(w, p, s):\n    return np.zeros_like(w, subok=True)\n",
])
def test_facade_calls_refused_whatever_the_values_are_refused_at_deploy(source):
    problems = check_source(source, returns=True)
    assert [p.rule for p in problems] == [Rule.ERROR] and problems[0].line == 3, problems
    assert "every call of it here is refused" in problems[0].message


@pytest.mark.parametrize("source", [
    "import numpy as np\ndef on_board(w, p, s):\n    return np.clip(*w)\n",  # counts not known
    "import numpy as np\ndef on_board(w, p, s):\n    return np.sum(w, **p)\n",
    "import numpy as np\nnp = p = None\ndef on_board(w, p, s):\n    return np.clip(w, where=1)\n",
    "import numpy as np\ndef on_board(w, p, s):\n    return np.where(w > 0, 1.0, 0.0), np.sum(w, where=w > 0)\n",
    "import numpy as np\ndef on_board(w, p, s):\n    return w['SPEED'].v.clip(0, 1, where=0)\n",  # a method
])
def test_facade_calls_that_may_run_pass_the_deploy_check(source):
    assert check_source(source, returns=True) == []


@pytest.mark.parametrize("source", [
    "def on_board(w, p, s):\n    return set(w)\n",
    "def on_board(w, p, s):\n    return [1, {2}]\n",
    "def on_board(w, p, s):\n    return {'a': map(abs, [1])}\n",
    "def helper():\n    return 1\ndef on_board(w, p, s):\n    return helper\n",
    "import numpy as np\ndef on_board(w, p, s):\n    return np.mean\n",
    "from numpy import float64\ndef on_board(w, p, s):\n    return float64\n",
    "def on_board(w, p, s):\n    if p:\n        return 1\n    return (x for x in w)\n",
    "def off_board(results, params, state):\n    yield from results\n",
    "def on_board(w, p, s):\n    return {None: 1}\n",
])
def test_returns_that_can_never_be_sent_are_refused_at_deploy(source):
    problems = check_source(source, returns=True)
    assert [p.rule for p in problems] == [Rule.DISALLOWED_RETURN], problems
    assert problems[0].line is not None


@pytest.mark.parametrize("source", [
    "def on_board(w, p, s):\n    set = list\n    return set(w)\n",  # their own set
    "def helper():\n    return 1\nhelper = 2\ndef on_board(w, p, s):\n    return helper\n",
    "import numpy as np\ndef on_board(w, p, s):\n    return np.pi\n",
    "def on_board(w, p, s):\n    w = {'a': 1}\n    return w['a']\n",
    "def on_board(w, p, s):\n    def inner():\n        return lambda: 1\n    return 1\n",
    "def on_board(w, p, s):\n    f = lambda: 1\n    return f()\n",
    "def on_board(w, p, s):\n    return {str(k): 1 for k in range(3)}\n",
    "def on_board(w, p, s):\n    return [x for x in range(3)]\n",
])
def test_returns_that_may_be_plain_data_pass(source):
    assert check_source(source, returns=True) == []


def test_the_load_check_is_unchanged_a_return_is_refused_at_run_time_there():
    source = "def on_board(w, p, s):\n    return {1, 2}\n"
    assert check_source(source) == []  # the worker's own check: its outcome stays the run-time one
    assert check_file_text(source)[0].rule is Rule.DISALLOWED_RETURN


def check_file_text(source: str, tmp: Path = Path("/tmp")) -> list:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".py", dir=tmp, delete=False) as f:
        f.write(source)
    try:
        return check_file(f.name)
    finally:
        Path(f.name).unlink()


# --- oodida check --allowed --------------------------------------------------------------------


def test_check_allowed_lists_the_facade_from_its_own_tables():
    result = subprocess.run([sys.executable, "-m", "oodida", "check", "--allowed"], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == allowed_text()
    listed = result.stdout.splitlines()
    for name, guarded in facade.NUMPY_GUARDED.items():
        spec = object.__getattribute__(guarded, "_spec")
        [line] = [ln for ln in listed if ln.startswith(f"  np.{name}(")]
        if spec.keywords:
            assert line.split("keywords: ")[1].split("   ")[0] == ", ".join(sorted(spec.keywords))
    for name in facade.METHOD_SPECS:
        assert any(ln.startswith(f"  a.{name}(") for ln in listed), name
    for name in ("convolve", "cumsum", "diff", "gradient", "interp", "percentile", "sort", "argsort", "where"):
        assert any(ln.startswith(f"  np.{name}(") for ln in listed), name
    assert "  np.where(condition, x, y)" in listed
    assert not any(ln.startswith(("  np.load(", "  np.empty_like(", "  a.resize(", "  a.tofile(")) for ln in listed)


def test_check_without_modules_is_a_usage_error_not_a_traceback():
    result = subprocess.run([sys.executable, "-m", "oodida", "check"], capture_output=True, text=True, timeout=60,
                            cwd=ROOT)
    assert result.returncode == 2
    assert "name the modules to check" in result.stderr and "Traceback" not in result.stderr


def test_the_check_off_the_loop_agrees_with_the_check_in_process():
    import asyncio

    from oodida.sandbox.check import THREAD_CHARS, check_off_loop

    small = "import os\ndef on_board(window, params, state):\n    return {1, 2}\n"
    large = small + "np.load\n" * 3000 + "x = '" + "a" * THREAD_CHARS + "'\n"
    for source in (small, large, (HOSTILE / "221_quadratic_check_underscores.py").read_text()):
        off = asyncio.run(check_off_loop(source, "m.py"))
        assert off == check_source(source, "m.py", returns=True) and off, off
