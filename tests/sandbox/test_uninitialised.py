"""No uninitialised memory comes back, by any route, from a real sandbox worker.

A module fills the worker's heap with a sentinel pattern (arrays of many sizes,
freed at once, so numpy's allocator cache and malloc hand those blocks out next),
then makes random calls that hypothesis draws: every facade function, every array
method on an instance and through its type, with random positional and keyword
arguments (`out`, `where`, `initial`, `dtype`, `subok`, ... among them). Whatever a
call returns is scanned, byte by byte, for the pattern: a block handed out without
being written (np.empty, a ufunc's where= without out) would carry it back.

The control shows the detector works: in this process, where numpy is not
guarded, np.empty after the same fill does return the sentinel. (It found one route
the issue did not name: long double, `astype('g')`, whose 6 padding bytes a value
numpy never writes; the facade now refuses extended-precision dtypes.)
"""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oodida.sandbox import facade
from oodida.sandbox.supervisor import SandboxLimits, Supervisor

PATTERN = bytes([0xA5, 0x5A, 0xC3, 0x3C, 0x96, 0x69, 0xF0, 0x0F])
SENTINEL = struct.unpack("<d", PATTERN)[0]  # a finite float64 whose bytes are the pattern
WINDOWS = sorted({(PATTERN * 2)[i:i + 4] for i in range(8)})  # any 4 bytes of it, at any alignment
FILL_SIZES = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64, 100, 128, 256, 512, 1000, 2048]
POOL = [  # the arguments a call may get, by index (rebuilt for every call: some methods write in place)
    "np.arange(6.0)", "np.ones((2, 3))", "np.zeros(6) > 1", "np.arange(6) % 2 == 0", "1.5", "0", "2", "-1",
    "None", "True", "False", "np.float64(2.5)", "np.int64(3)", "'float32'", "'S8'", "'O'", "np.arange(4)",
    "np.zeros(())", "(2, 3)", "[1.0, 2.0, 3.0]", "'valid'", "'linear'", "np.zeros(6)", "np.float64", "'g'", "'G'",
    "np.zeros(32, dtype=np.uint8)",
]
KEYWORDS = sorted(
    {k for g in facade.NUMPY_GUARDED.values() for k in object.__getattribute__(g, "_spec").keywords}
    | {k for s in facade.METHOD_SPECS.values() for k in s.keywords}
    | {"out", "where", "like", "subok", "initial", "casting", "refcheck", "device", "overwrite_input", "type"}
)
FUNCTIONS = sorted(facade.NUMPY_GUARDED)
METHODS = sorted(facade.METHOD_SPECS) + ["resize", "choose", "to_device"]  # and some that are refused
TYPES = ["float64", "int64", "uint8", "bool_"]


def module_source() -> str:
    methods = ",\n".join(f"    {m!r}: lambda o, *a, **k: o.{m}(*a, **k)" for m in METHODS)
    typed = ",\n".join(f"    ({t!r}, {m!r}): lambda *a, **k: np.{t}.{m}(*a, **k)" for t in TYPES for m in METHODS)
    functions = ",\n".join(f"    {f!r}: np.{f}" for f in FUNCTIONS)
    pool = ",\n".join(f"        {p}" for p in POOL)
    return f'''
import numpy as np

F = {{
{functions}
}}
M = {{
{methods}
}}
T = {{
{typed}
}}
WINDOWS = {WINDOWS!r}
SIZES = {FILL_SIZES!r}


def pool():
    return [
{pool}
    ]


def fill():
    keep = []
    for n in SIZES:
        for i in range(8):
            keep.append(np.full(n, {SENTINEL!r}))
    keep = None


def leaks(value, found, where):
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            leaks(item, found, where)
        return
    try:
        data = np.asarray(value).tobytes()
    except Exception:
        return
    for w in WINDOWS:
        if w in data:
            found.append(where)
            return


def on_board(window, params, state):
    found = []
    ran = 0
    for kind, name, args, kwargs in params["calls"]:
        p = pool()
        a = [p[i] for i in args]
        k = {{}}
        for key, i in kwargs:
            k[key] = p[i]
        fill()
        try:
            if kind == "f":
                value = F[name](*a, **k)
            elif kind == "m":
                value = M[name](*a, **k)
            else:
                value = T[name[0], name[1]](*a, **k)
        except Exception:
            continue
        ran += 1
        leaks(value, found, f"{{kind}} {{name}} {{args}} {{kwargs}}")
    return {{"found": found, "ran": ran}}
'''


ARRAYS = [0, 1, 2, 3, 16, 17, 19, 22, 26]  # indices into POOL of array-like arguments
HOSTILE_KEYWORDS = ["out", "where", "initial", "subok", "dtype", "like", "casting", "type"]


def _own_keywords(target: tuple[str, object]) -> list[str]:
    kind, name = target
    if kind == "f":
        spec = object.__getattribute__(facade.NUMPY_GUARDED[name], "_spec")
    else:
        spec = facade.METHOD_SPECS.get(name if kind == "m" else name[1])  # type: ignore[index]
    return sorted(spec.keywords) if spec is not None else []


def _call(target: tuple[str, object]) -> st.SearchStrategy:
    """Calls of one target: no keyword, its own keywords (so that many calls run),
    or its own and the hostile ones mixed."""
    kind, name = target
    own = _own_keywords(target)
    value = st.integers(0, len(POOL) - 1)
    pairs = [st.just([])]
    for names in ([own] if own else []) + [own + HOSTILE_KEYWORDS]:
        pairs.append(st.lists(st.tuples(st.sampled_from(names), value), min_size=1, max_size=3,
                              unique_by=lambda kv: kv[0]))
    first = st.sampled_from(ARRAYS if kind != "t" else [4, 11, 12, 17])
    return st.tuples(
        st.just(kind), st.just(list(name) if isinstance(name, tuple) else name),
        st.tuples(first, st.lists(value, max_size=2)).map(lambda fr: [fr[0], *fr[1]]),
        st.one_of(pairs),
    )


call = st.one_of(
    st.tuples(st.just("f"), st.sampled_from(FUNCTIONS)),
    st.tuples(st.just("m"), st.sampled_from(METHODS)),
    st.tuples(st.just("t"), st.tuples(st.sampled_from(TYPES), st.sampled_from(METHODS))),
).flatmap(_call)
RAN = {"calls": 0, "ran": 0}


@pytest.fixture(scope="module")
def worker():
    supervisor = Supervisor(SandboxLimits(call_timeout=20.0, memory_mb=512))
    loop = asyncio.new_event_loop()
    try:
        digest = loop.run_until_complete(supervisor.load(module_source(), "sentinel.py"))
        assert supervisor.failure(digest) is None, supervisor.failure(digest)
        yield supervisor, loop, digest
    finally:
        loop.run_until_complete(supervisor.close())
        loop.close()


def run_calls(worker, calls):
    supervisor, loop, digest = worker
    window = {"SPEED": (np.arange(10.0), np.ones(10))}
    outcome = loop.run_until_complete(supervisor.call(digest, "on_board", window=window,
                                                      params={"calls": calls}, state=None))
    assert outcome.ok, outcome
    return outcome.value


def test_the_detector_sees_the_sentinel_where_numpy_is_not_guarded():
    keep = [np.full(n, SENTINEL) for n in FILL_SIZES for _ in range(8)]
    del keep
    assert any(w in np.empty(100).tobytes() for w in WINDOWS)


def test_the_known_routes_run_and_bring_back_no_sentinel(worker):
    calls = [
        ["m", "clip", [4, 4], [["where", 2]]],  # the np.ones(100).clip(0.0, 1.0, where=...)
        ["t", ["float64", "astype"], [11, 14], []],  # np.float64.astype(x, "S8")
        ["f", "empty", [18], []],
        ["m", "sum", [0], [["where", 2]]],  # allowed: a reduction fills what it skips
        ["f", "where", [2, 0, 22], []],
        ["f", "convolve", [0, 0], []],
        ["m", "cumsum", [0], []],
        ["m", "astype", [0, 24], []],  # long double: 6 padding bytes a value that numpy never writes
        ["f", "ones", [18], [["dtype", 24]]],
        ["m", "view", [26, 25], []],
    ]
    value = run_calls(worker, calls)
    assert value["found"] == []
    assert value["ran"] == 5  # clip with where= and astype to bytes are refused; the rest run


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(calls=st.lists(call, min_size=5, max_size=30))
def test_random_calls_with_random_keywords_never_bring_back_the_sentinel(worker, calls):
    value = run_calls(worker, calls)
    assert value["found"] == [], value["found"]
    RAN["calls"] += len(calls)
    RAN["ran"] += value["ran"]


def test_the_random_calls_exercised_the_surface():
    """Most drawn calls are refused (that is the point), but enough must run for the
    property to mean something."""
    assert RAN["calls"] >= 300
    assert RAN["ran"] >= max(20, RAN["calls"] // 20), RAN
