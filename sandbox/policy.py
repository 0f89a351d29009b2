"""The compile policy for analysts' modules, and the restricted world they run in.

RestrictedPython rewrites the module so every attribute read, item read, iteration,
unpacking, write and print goes through a guard we supply; on top of its own
refusals (names starting with "_", `exec`, `except*`) we refuse imports outside an
allow-list, class definitions and the builtins that reach the interpreter. This is a
guard rail, not the boundary: the worker process's OS confinement is (hardening.py).
"""

from __future__ import annotations

import ast
import operator
import re
import sys
import types
from typing import Any

from RestrictedPython import PrintCollector, compile_restricted_exec, safe_builtins
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
)

from sandbox.errors import PolicyError, Problem, Rule, Violation
from sandbox.facade import FACADES

ENTRY_POINTS: dict[str, int] = {"on_board": 3, "off_board": 3, "migrate": 1}
ALLOWED_IMPORTS: frozenset[str] = frozenset(FACADES)
FORBIDDEN_BUILTINS = frozenset(
    "eval exec compile open __import__ globals locals vars breakpoint input help memoryview dir type object "
    "super getattr setattr delattr hasattr classmethod staticmethod property id exit quit format".split()
)
# Attributes that reach frames, code, memory or files, even without a leading "_".
FORBIDDEN_ATTRIBUTES = frozenset(
    "ctypes tofile dump dumps data base setflags mro format format_map gi_frame gi_code gi_yieldfrom "
    "cr_frame cr_code cr_await ag_frame ag_code ag_await f_back f_globals f_locals f_builtins f_code "
    "tb_frame tb_next func_globals func_code getfield newbyteorder".split()
)
MAX_PRINT = 64 * 1024


class ForbiddenAttribute(AttributeError):
    pass


class ForbiddenImport(ImportError):
    pass


def _lineno(message: str) -> int | None:
    m = re.match(r"Line (\d+)", message)
    return int(m.group(1)) if m else None


def check_source(source: str, filename: str = "<module>") -> list[Problem]:
    """Every reason this module may not run, with line numbers; [] when it may."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        return [Problem(Rule.SYNTAX, exc.msg, exc.lineno, exc.offset)]
    problems: list[Problem] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in ALLOWED_IMPORTS or "." in alias.name:
                    problems.append(_import_problem(alias.name, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level or node.module not in ALLOWED_IMPORTS:
                problems.append(_import_problem("." * node.level + (node.module or ""), node.lineno))
        elif isinstance(node, ast.ClassDef):
            problems.append(
                Problem(Rule.FORBIDDEN_SYNTAX, "class definitions are not allowed; use functions and dicts", node.lineno)
            )
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_BUILTINS:
            problems.append(Problem(Rule.FORBIDDEN_NAME, f"{node.id} is not available in the sandbox", node.lineno))
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            problems.append(Problem(Rule.FORBIDDEN_ATTRIBUTE, f".{node.attr} is not allowed", node.lineno))
    result = compile_restricted_exec(source, filename)
    for message in result.errors:
        line = _lineno(message)
        text = re.sub(r"^Line \d+: ", "", message)
        if "TryStar" in text:
            rule, text = Rule.FORBIDDEN_SYNTAX, "except* is not allowed"
        elif "attribute" in text:
            rule = Rule.FORBIDDEN_ATTRIBUTE
        elif "name" in text:
            rule = Rule.FORBIDDEN_NAME
        else:
            rule = Rule.FORBIDDEN_SYNTAX
        if not any(p.line == line and p.rule == rule for p in problems):
            problems.append(Problem(rule, text, line))
    problems.extend(_entry_problems(tree))
    return sorted(problems, key=lambda p: (p.line or 0, p.rule.value))


def _import_problem(name: str, line: int) -> Problem:
    allowed = ", ".join(sorted(ALLOWED_IMPORTS))
    return Problem(Rule.FORBIDDEN_IMPORT, f"{name or '.'} is not allowed (allowed: {allowed})", line)


def _entry_problems(tree: ast.Module) -> list[Problem]:
    found = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ENTRY_POINTS}
    if not found:
        return [Problem(Rule.MISSING_ENTRY, "define on_board(window, params, state) and/or "
                        "off_board(results, params, state)")]
    problems = []
    for name, node in found.items():
        args = node.args
        positional = len(args.posonlyargs) + len(args.args)
        if positional != ENTRY_POINTS[name] or args.vararg or args.kwonlyargs or args.kwarg:
            want = {"on_board": "window, params, state", "off_board": "results, params, state", "migrate": "old_state"}
            problems.append(Problem(Rule.MISSING_ENTRY, f"{name} must take ({want[name]})", node.lineno))
    return problems


def compile_module(source: str, filename: str = "<module>") -> types.CodeType:
    problems = check_source(source, filename)
    if problems:
        raise PolicyError(problems)
    result = compile_restricted_exec(source, filename)
    assert result.code is not None
    return result.code


# --- the restricted world -----------------------------------------------------------


def guarded_getattr(obj: Any, name: str, default: Any = None) -> Any:
    if name in FORBIDDEN_ATTRIBUTES or name.startswith("_"):
        raise ForbiddenAttribute(f".{name} is not allowed")
    if isinstance(obj, (types.ModuleType, types.FrameType, types.TracebackType, types.CodeType)):
        raise ForbiddenAttribute(f"attributes of {type(obj).__name__} objects are not allowed")
    if isinstance(obj, str) and name in ("format", "format_map"):
        raise ForbiddenAttribute(f"str.{name} is not allowed")
    # Not safer_getattr(obj, name): it returns None for a missing attribute, and a
    # refused `np.load` must say so, not fail later as "None is not callable".
    return getattr(obj, name)


def _getitem(obj: Any, key: Any) -> Any:
    return obj[key]


_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "&=": operator.iand, "|=": operator.ior, "^=": operator.ixor,
    "@=": operator.imatmul,
}


def _inplacevar(op: str, x: Any, y: Any) -> Any:
    return _INPLACE[op](x, y)


class BoundedPrint(PrintCollector):
    """print() output, kept up to MAX_PRINT characters: a print flood costs nothing."""

    total = 0

    def write(self, text: str) -> None:
        room = MAX_PRINT - BoundedPrint.total
        if room > 0:
            super().write(text[:room])
        BoundedPrint.total += len(text)


def _import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
    if not level and name in ALLOWED_IMPORTS:
        return _FACADES[name]
    # numpy's C code imports its own helpers lazily (`numpy._core._methods` for
    # ndarray.mean) through the builtins of the calling frame: ours. User code cannot
    # write such an import (the compile check refuses dotted and underscored names),
    # so an already loaded numpy submodule is numpy talking to itself.
    if not level and name.startswith("numpy.") and name in sys.modules:
        return sys.modules[name]
    raise ForbiddenImport(f"{name} is not allowed (allowed: {', '.join(sorted(ALLOWED_IMPORTS))})")


_FACADES = {name: make() for name, make in FACADES.items()}

_BUILTINS = {k: v for k, v in safe_builtins.items() if k not in FORBIDDEN_BUILTINS and k != "__build_class__"}
_BUILTINS.update(
    {
        "__import__": _import,
        "min": min, "max": max, "sum": sum, "sorted": sorted, "enumerate": enumerate, "zip": zip,
        "map": map, "filter": filter, "any": any, "all": all, "list": list, "dict": dict, "tuple": tuple,
        "set": set, "frozenset": frozenset, "reversed": reversed,
    }
)


def make_globals(name: str) -> dict[str, Any]:
    """A fresh global namespace for one module: nothing in it is shared mutable state."""
    return {
        "__builtins__": dict(_BUILTINS),
        "__name__": name,
        "_getattr_": guarded_getattr,
        "_getitem_": _getitem,
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": full_write_guard,
        "_inplacevar_": _inplacevar,
        "_print_": BoundedPrint,
        "_apply_": lambda f, *a, **k: f(*a, **k),
    }


def load_module(source: str, filename: str = "<module>") -> dict[str, Any]:
    code = compile_module(source, filename)
    namespace = make_globals(filename.rsplit("/", 1)[-1].removesuffix(".py") or "module")
    try:
        exec(code, namespace)
    except BaseException as exc:  # noqa: BLE001 — translated, never re-raised as is
        raise translate(exc, filename) from None
    return namespace


def call_entry(namespace: dict[str, Any], entry: str, *args: Any, filename: str = "<module>") -> Any:
    fn = namespace.get(entry)
    if not isinstance(fn, types.FunctionType):
        raise Violation(Rule.MISSING_ENTRY, f"the module does not define {entry}")
    BoundedPrint.total = 0
    try:
        return fn(*args)
    except BaseException as exc:  # noqa: BLE001
        raise translate(exc, filename) from None


def translate(exc: BaseException, filename: str) -> Violation:
    """An exception from user code as a rule and a message: no frames, no objects."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    exc.__traceback__ = None
    if isinstance(exc, ForbiddenAttribute):
        return Violation(Rule.FORBIDDEN_ATTRIBUTE, str(exc), line)
    if isinstance(exc, ForbiddenImport):
        return Violation(Rule.FORBIDDEN_IMPORT, str(exc), line)
    if isinstance(exc, NameError) and getattr(exc, "name", None) in FORBIDDEN_BUILTINS:
        return Violation(Rule.FORBIDDEN_NAME, f"{exc.name} is not available in the sandbox", line)
    if isinstance(exc, MemoryError):
        return Violation(Rule.MEMORY, "out of memory", line)
    if isinstance(exc, RecursionError):
        return Violation(Rule.ERROR, "RecursionError: recursion too deep", line)
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return Violation(Rule.ERROR, f"{type(exc).__name__} is not allowed", line)
    message = str(exc)
    if isinstance(exc, AttributeError) and ("not allowed" in message or "not available in the sandbox" in message):
        return Violation(Rule.FORBIDDEN_ATTRIBUTE, message, line)
    if isinstance(exc, TypeError) and "attribute-less object" in message:
        return Violation(Rule.FORBIDDEN_ATTRIBUTE, "changing attributes of this object is not allowed", line)
    return Violation(Rule.ERROR, f"{type(exc).__name__}: {message}"[:2000], line)


class Signal:
    """One signal of a window as user code sees it: read-only arrays, nothing else."""

    __slots__ = ("t", "v")

    def __init__(self, t: Any, v: Any) -> None:
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "v", v)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("window signals are read-only")

    def __len__(self) -> int:
        return len(self.v)


def make_signal(t: Any, v: Any) -> Signal:
    for a in (t, v):
        a.flags.writeable = False
    return Signal(t, v)
