"""`oodida check`: the policy the vehicles apply, run on the analyst's own machine,
and the same check for the server, run where it cannot hold up other peers.

    $ oodida check mine.py
    mine.py:1: forbidden import: os is not allowed (allowed: math, numpy, statistics)
    mine.py:7: forbidden attribute: .tofile is not allowed: it reads or writes files

The check is linear and bounded by the policy's budget (policy.MAX_SOURCE_CHARS,
MAX_LINES, MAX_NODES), but parsing is C code that holds the GIL for as long as it
runs: a thread alone would still stall an event loop for a large module (290 ms
for 250 KB of one line, measured against a real server). So `check_off_loop` checks
small modules in a thread and larger ones in a process of their own (about 0.3 s to
start; a module over 16 KiB is rare): it only parses and walks the text, it never
runs a line of it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from oodida.core.text import inert
from oodida.sandbox import facade
from oodida.sandbox.errors import Problem, Rule
from oodida.sandbox.policy import check_source, over_budget

THREAD_CHARS = 16 * 1024  # below this the parser holds the GIL for a few ms at most: a thread will do
CHECK_TIMEOUT = 30.0  # seconds; the budget makes the slowest module a second or two, so this is a broken checker
MAX_REASON = 4000  # characters of a refusal's text: the protocol allows 4,096 and the caller adds a little


def check_file(path: str | Path) -> list[Problem]:
    """Every problem of the module at `path` under the sandbox policy, and every
    return value it can never send; [] when none."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [Problem(Rule.SYNTAX, f"cannot read {path}: {exc.strerror or exc}")]
    try:
        source = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return [Problem(Rule.SYNTAX, f"the module is not UTF-8 text ({exc.reason})", line)]
    return check_source(source, path.name, returns=True)


def format_problems(path: str | Path, problems: list[Problem]) -> str:
    """One line per problem, `FILE:LINE: RULE: MESSAGE` (no LINE where none is known),
    each inert: a message may quote the module's text."""
    lines = []
    for p in problems:
        where = f"{path}:{p.line}" if p.line is not None else f"{path}"
        lines.append(inert(f"{where}: {p.rule.value}: {p.message}"))
    return "\n".join(lines)


def summarise(head: str, lines: list[str], limit: int = MAX_REASON) -> str:
    """`head` and as many of `lines` as fit in `limit` characters, one a line, the
    rest counted ("... and 12 more"): every refusal fits the protocol's limits."""
    head = head if len(head) <= limit - 40 else head[: limit - 41] + "…"
    out = [head]
    size = len(head)
    for i, line in enumerate(lines):
        if len(line) > 1000:
            line = line[:999] + "…"
        rest = len(lines) - i - 1
        reserve = len(f"\n... and {rest} more") if rest else 0
        if size + 1 + len(line) + reserve > limit:
            return "\n".join(out) + f"\n... and {len(lines) - i} more"
        out.append(line)
        size += 1 + len(line)
    return "\n".join(out)


# --- off the event loop ------------------------------------------------------------------


def _serve() -> None:
    """The checker process: one request on stdin (JSON: source, filename, returns),
    its problems on stdout (JSON). It parses and walks the text; it runs none of it."""
    request = json.loads(sys.stdin.buffer.read())
    problems = check_source(request["source"], request["filename"], returns=request["returns"])
    sys.stdout.write(json.dumps([[p.rule.value, p.message, p.line, p.col] for p in problems]))


async def check_off_loop(source: str, filename: str = "<module>", *, returns: bool = True) -> list[Problem]:
    """`check_source` where it cannot block the running event loop: in a thread for
    a small module, in a checker process of its own for a larger one (exec'd with
    `-I` and an empty environment: it holds none of the caller's state)."""
    if type(source) is not str or len(source) <= THREAD_CHARS:
        return await asyncio.to_thread(check_source, source, filename, returns=returns)
    too_large = over_budget(source)  # counting characters and lines: microseconds, no process needed
    if too_large is not None:
        return [too_large]
    request = json.dumps({"source": source, "filename": filename, "returns": returns}).encode()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-m", "oodida.sandbox.check", "--serve", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env={}, cwd="/",
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(request), CHECK_TIMEOUT)
        raw = json.loads(out) if proc.returncode == 0 else None
    except TimeoutError:
        raw = None
    except ValueError:  # not JSON: the checker broke
        raw = None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if type(raw) is not list:
        return [Problem(Rule.MODULE_TOO_LARGE, "the module could not be checked in time; it is refused "
                        "(make it smaller)")]
    return [Problem(Rule(rule), message, line, col) for rule, message, line, col in raw]


# --- oodida check --allowed --------------------------------------------------------------


def _params(fn: Any, spec: facade.Spec) -> str:
    """The positional parameters a sandbox call takes, by their numpy names."""
    n = spec.max_positional
    if isinstance(fn, np.ufunc):
        names = ["x"] if fn.nin == 1 else [f"x{i + 1}" for i in range(fn.nin)]
        return ", ".join(names)
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    except (TypeError, ValueError):
        return "..."
    shown = []
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            shown.append(f"*{p.name}")
            break
        if n is not None and len(shown) >= n:
            break
        shown.append(p.name)
    return ", ".join(shown)


def _line(name: str, call: str, spec: facade.Spec) -> str:
    keywords = ", ".join(sorted(spec.keywords))
    return f"  {name}({call})" + (f"   keywords: {keywords}" if keywords else "")


def allowed_text() -> str:
    """What a module may call, generated from the facade itself (the same tables the
    sandbox enforces, so the list cannot go stale)."""
    out = ["Modules may import: " + ", ".join(sorted(facade.FACADES)) + ". Nothing else.",
           "Every call takes the positional arguments shown and only the keywords listed; no out=, like=,",
           "subok= or device= anywhere, and where= only on reductions (sum, mean, min, ...).", "",
           "numpy (import numpy as np)"]
    for name, g in sorted(facade.NUMPY_GUARDED.items()):
        fn, spec = object.__getattribute__(g, "_fn"), object.__getattribute__(g, "_spec")
        line = _line(f"np.{name}", _params(fn, spec), spec)
        if name in facade.NUMPY_ALIASES:
            line += f"   (the same as np.{facade.NUMPY_ALIASES[name]}: never uninitialised memory)"
        out.append(line)
    out.append("  constants: " + ", ".join(f"np.{n}" for n in sorted(facade.NUMPY_CONSTANTS)))
    out.append("  types (also as dtypes): " + ", ".join(f"np.{n}" for n in sorted(facade.NUMPY_TYPES)))
    out += ["", "methods of arrays and numpy scalars (a.sum(), also through a type: np.float64.astype(x, ...))"]
    for name, spec in sorted(facade.METHOD_SPECS.items()):
        n = spec.max_positional
        call = "*args" if n is None else ", ".join(f"arg{i + 1}" for i in range(n))
        out.append(_line(f"a.{name}", call, spec))
    for module in ("math", "statistics"):
        out += ["", f"{module} (import {module})"]
        members = getattr(facade, f"_{module.upper()}_MEMBERS")
        for name, value in sorted(members.items()):
            if isinstance(value, facade.Guarded):
                fn, spec = object.__getattribute__(value, "_fn"), object.__getattribute__(value, "_spec")
                out.append(_line(f"{module}.{name}", _params(fn, spec), spec))
            else:
                out.append(f"  {module}.{name}")
    return "\n".join(out)


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve()
