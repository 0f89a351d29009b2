"""The compile policy for analysts' modules, and the restricted world they run in.

RestrictedPython (9.x) rewrites a module so that every attribute read, item read,
iteration, unpacking, write and print goes through a guard we supply, and refuses
on its own names that start with "_", `exec`/`eval`, `except*`, `async`, `nonlocal`
and the inspection attributes of frames, tracebacks, generators and code. On top of
that this policy

- refuses at compile time, with line numbers, everything it can see statically:
  imports outside the allow-list (by every route the AST shows), names outside our
  builtins (`open`, `type`, `getattr`, ...) unless the module binds them itself,
  attributes that reach memory, files or frames (`ctypes`, `tofile`, `base`,
  `format`, `mro`, ...), members a facade does not have (`np.load`), writes to an
  imported module (`math.sqrt = ...`), class definitions, missing entry points;
- guards at run time what it cannot see: `_getattr_` refuses the same attributes
  plus any attribute of a module, frame, traceback or code object and all but
  `.args` of an exception (`AttributeError.obj` hands out the object it was raised
  on); `_write_` allows writes into dicts, lists and numpy arrays only (a read-only
  window array still refuses); methods of arrays and numpy scalars, reached on an
  instance or through their type, are wrapped like facade functions, each within
  its keyword allow-list (`facade.METHOD_SPECS`; no `out`, no `where` but on
  reductions, no object or string dtypes through `astype`/`view`), and a method
  not listed is not available;
- turns everything user code raises into one `Violation` (rule, message, line)
  that carries no traceback, frame, exception chain or object of the module.

This is a guard rail, not the boundary: the worker process's OS confinement is
(hardening.py). The module is imported by the worker before its seccomp filter
loads; nothing here imports lazily.
"""

from __future__ import annotations

import ast
import builtins
import operator
import re
import reprlib
import sys
import traceback
import types
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from RestrictedPython.compile import compile_restricted_exec
from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    raise_,
    safe_builtins,
    safer_getattr,
)
from RestrictedPython.PrintCollector import PrintCollector
from RestrictedPython.transformer import INSPECT_ATTRIBUTES

from oodida.sandbox.errors import PolicyError, Problem, Rule, Violation
from oodida.sandbox.facade import (
    FACADE_MEMBERS,
    FACADES,
    METHOD_SPECS,
    TYPE_METHOD_SPECS,
    Facade,
    ForbiddenDtype,
    Guarded,
    MissingMember,
    Spec,
)
from oodida.sandbox.static_refusals import static_refusals

ENTRY_POINTS: dict[str, int] = {"on_board": 3, "off_board": 3, "migrate": 1}
ENTRY_SIGNATURES = {"on_board": "window, params, state", "off_board": "results, params, state", "migrate": "old_state"}
ALLOWED_IMPORTS: frozenset[str] = frozenset(FACADES)
MAX_PRINT = 64 * 1024  # characters of print() output kept per call
MAX_MESSAGE = 2000  # characters of an error message
# The check's budget: beyond these a module is refused before it is parsed (or
# walked). Measured on this project's 2-core CI machine under load, the slowest
# module shapes within them check in about a second (tests/sandbox/test_check_budget.py).
MAX_SOURCE_CHARS = 256 * 1024  # the protocol's own limit (wire.messages.MAX_MODULE_BYTES)
MAX_LINES = 10_000
MAX_NODES = 50_000
MAX_PROBLEMS = 50  # problems listed; the last says how many more

# --- builtins ----------------------------------------------------------------------------

# RestrictedPython's safe_builtins, less what reaches the interpreter or leaks
# addresses, plus the harmless ones analysts expect. Our `_getiter_` is plain
# iter(), so builtins that iterate in C (sorted, tuple, zip, ...) bypass nothing.
_REMOVED_FROM_SAFE = {"__build_class__", "id", "setattr", "delattr", "_getattr_"}
_ADDED = {
    name: getattr(builtins, name)
    for name in [
        "all", "any", "ascii", "bin", "bytes", "dict", "enumerate", "filter", "frozenset", "list", "map", "max",
        "min", "next", "iter", "reversed", "set", "sorted", "sum", "tuple", "zip", "RecursionError",
        "NotImplemented",
    ]
}
BUILTINS: dict[str, Any] = {k: v for k, v in safe_builtins.items() if k not in _REMOVED_FROM_SAFE}
BUILTINS.update(_ADDED)
# Every other builtin of CPython (open, eval, exec, compile, type, object, getattr,
# globals, vars, dir, memoryview, bytearray, super, input, breakpoint, exit, ...):
# a module that uses one without binding the name itself is refused at compile time.
# (`print` is RestrictedPython's: it becomes a call of `_print_`.) site.py adds a
# few more that an interpreter started with -S (the worker) lacks: named here, so
# the policy is the same in the worker and on the analyst's machine.
_SITE_BUILTINS = frozenset({"exit", "quit", "help", "copyright", "credits", "license"})
UNAVAILABLE_BUILTINS: frozenset[str] = frozenset(
    n for n in set(dir(builtins)) | _SITE_BUILTINS if n not in BUILTINS and n != "print"
)

# --- attributes --------------------------------------------------------------------------

_MEMORY = "it reaches raw memory or the buffer behind an array"
_FILES = "it reads or writes files"
_FRAMES = "it reaches frames, code or globals of running code"
FORBIDDEN_ATTRIBUTES: dict[str, str] = {
    "ctypes": _MEMORY, "data": _MEMORY, "base": _MEMORY, "getfield": _MEMORY, "setfield": _MEMORY,
    "setflags": "the window's arrays are read-only and stay so",
    "tofile": _FILES, "dump": _FILES, "dumps": "it pickles",
    "format": "str.format walks attributes of its arguments; use an f-string",
    "format_map": "str.format_map walks attributes of its arguments; use an f-string",
    "mro": "it walks the class hierarchy",
    "obj": "an AttributeError's .obj hands out the object it was raised on",
    "func_globals": _FRAMES, "func_code": _FRAMES,
    **{name: _FRAMES for name in INSPECT_ATTRIBUTES},
}
_MODULE_LIKE = (types.ModuleType, types.FrameType, types.TracebackType, types.CodeType)


class ForbiddenAttribute(AttributeError):
    """A guard refused to read or write an attribute."""


class ForbiddenWrite(TypeError):
    """A guard refused a write into an object that is not plain data."""


class ForbiddenImport(ImportError):
    """The import hook refused a name outside the allow-list."""


# --- compile time ------------------------------------------------------------------------


def defines(source: str, entry: str) -> bool:
    """Whether the module defines `entry` at its top level (False if it does not parse:
    the policy check says why, this only tells which halves a module offers)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.FunctionDef) and node.name == entry for node in tree.body)


def check_source(source: str, filename: str = "<module>", *, returns: bool = False) -> list[Problem]:
    """Every reason this module may not run, with line numbers; [] when it may.
    With `returns`, also every return value that can never be sent
    (sandbox/static_refusals.py): the check at submit, deploy and `oodida check`."""
    return _analyse(source, filename, returns)[0]


def compile_module(source: str, filename: str = "<module>") -> types.CodeType:
    """The restricted code object of a module the policy accepts; PolicyError with
    every problem otherwise."""
    problems, code = _analyse(source, filename)
    if problems or code is None:
        raise PolicyError(problems or [Problem(Rule.SYNTAX, "the module cannot be compiled")])
    return code


def _analyse(source: str, filename: str, returns: bool = False) -> tuple[list[Problem], types.CodeType | None]:
    if type(source) is not str:
        return [Problem(Rule.SYNTAX, "a module is Python source text")], None
    if "\x00" in source:
        line = source.count("\n", 0, source.index("\x00")) + 1
        return [Problem(Rule.SYNTAX, "the source contains a NUL character", line)], None
    too_large = over_budget(source)
    if too_large is not None:
        return [too_large], None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "invalid escape sequence" and the like are not refusals
            tree = ast.parse(source, filename)
            too_large = _too_many_nodes(tree)
            if too_large is not None:
                return [too_large], None
            problems = _Checker(tree).run()
            if returns:
                problems.extend(static_refusals(tree))
            result = compile_restricted_exec(tree, filename)  # the tree we checked: one parse, not two
    except SyntaxError as exc:  # IndentationError and TabError too
        return [Problem(Rule.SYNTAX, exc.msg or "invalid syntax", exc.lineno, exc.offset)], None
    except (RecursionError, MemoryError, ValueError, OverflowError) as exc:
        message = f"the module cannot be compiled ({type(exc).__name__}: nested too deeply or too large)"
        return [Problem(Rule.SYNTAX, message)], None
    seen = {(p.line, p.rule) for p in problems}  # a set: one lookup per error, not a scan of all problems
    for message in result.errors:
        problem = _restricted_problem(message)
        if (problem.line, problem.rule) not in seen:
            seen.add((problem.line, problem.rule))
            problems.append(problem)
    problems.sort(key=lambda p: (p.line if p.line is not None else 0, p.col or 0, p.rule.value))
    return _capped(problems), (None if problems else result.code)


def over_budget(source: str) -> Problem | None:
    """A module too large to check quickly (by its characters and lines alone), refused before it is parsed: the check
    runs wherever a module arrives (server, agent, worker), and its cost must stay
    bounded whatever the text (RestrictedPython and the parser are linear, but 256
    KiB of one-line statements still takes seconds)."""
    if len(source) > MAX_SOURCE_CHARS:
        line = source.count("\n", 0, MAX_SOURCE_CHARS) + 1  # where the budget runs out
        return Problem(Rule.MODULE_TOO_LARGE, f"the module is {len(source):,} characters; the sandbox checks "
                       f"modules of at most {MAX_SOURCE_CHARS:,} (split it, or move data into params)", line)
    lines = source.count("\n") + (not source.endswith("\n"))
    if lines > MAX_LINES:
        return Problem(Rule.MODULE_TOO_LARGE, f"the module has {lines:,} lines; the sandbox checks modules of at "
                       f"most {MAX_LINES:,} (split it, or move data into params)", MAX_LINES + 1)
    return None


def _too_many_nodes(tree: ast.Module) -> Problem | None:
    count = 0
    line = 1
    for node in ast.walk(tree):
        count += 1
        line = getattr(node, "lineno", line)
        if count > MAX_NODES:
            return Problem(Rule.MODULE_TOO_LARGE, f"the module has more than {MAX_NODES:,} syntax nodes, the most "
                           "the sandbox checks (split it, or move data into params)", line)
    return None


def _capped(problems: list[Problem]) -> list[Problem]:
    """At most MAX_PROBLEMS, the last of them saying how many more there were: a
    refusal must fit the protocol's limits (4,096 characters a reason)."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    kept = problems[:MAX_PROBLEMS - 1]
    rest = problems[MAX_PROBLEMS - 1:]
    rules = ", ".join(sorted({p.rule.value for p in rest}))
    return [*kept, Problem(rest[0].rule, f"and {len(rest):,} more problems ({rules})", rest[0].line)]


_RP_MESSAGE = re.compile(r"^Line (\d+|None): (.*)$", re.DOTALL)


def _restricted_problem(message: str) -> Problem:
    """One of RestrictedPython's compile errors as a Problem with our rule."""
    m = _RP_MESSAGE.match(message)
    line, text = (int(m.group(1)) if m.group(1) != "None" else None, m.group(2)) if m else (None, message)
    if "TryStar" in text:
        return Problem(Rule.FORBIDDEN_SYNTAX, "except* is not allowed in the sandbox", line)
    if "invalid attribute name" in text or "restricted name" in text:
        return Problem(Rule.FORBIDDEN_ATTRIBUTE, text, line)
    if "variable name" in text or "reserved name" in text:
        return Problem(Rule.FORBIDDEN_NAME, text, line)
    if "Exec calls" in text or "Eval calls" in text:
        return Problem(Rule.FORBIDDEN_NAME, text, line)
    if "imports are not allowed" in text or "import statements" in text:
        return Problem(Rule.FORBIDDEN_IMPORT, text, line)
    if text.startswith("SyntaxError"):
        return Problem(Rule.SYNTAX, text, line)
    return Problem(Rule.FORBIDDEN_SYNTAX, text, line)


def _allowed() -> str:
    return ", ".join(sorted(ALLOWED_IMPORTS))


class _Checker(ast.NodeVisitor):
    """What the policy sees in the AST, beyond RestrictedPython's own checks."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.problems: list[Problem] = []
        # Every name the module binds anywhere (any scope): an analyst's own `type`
        # or `format` variable is theirs, not the builtin.
        self.bound: set[str] = set()
        # name -> facade module, for names bound only by `import numpy as np`.
        self.imported: dict[str, str] = {}
        rebound: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                self.bound.add(node.id)
                rebound.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.bound.add(node.name)
                rebound.add(node.name)
            elif isinstance(node, ast.arg):
                self.bound.add(node.arg)
                rebound.add(node.arg)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                self.bound.add(node.name)
                rebound.add(node.name)
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                self.bound.update(node.names)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    self.bound.add(bound)
                    if alias.name in ALLOWED_IMPORTS:
                        self.imported.setdefault(bound, alias.name)
                        if self.imported[bound] != alias.name:
                            rebound.add(bound)
                    else:
                        rebound.add(bound)
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    self.bound.add(alias.asname or alias.name)
                    rebound.add(alias.asname or alias.name)
            elif hasattr(ast, "MatchAs") and isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
                self.bound.add(node.name)
                rebound.add(node.name)
            elif hasattr(ast, "MatchMapping") and isinstance(node, ast.MatchMapping) and node.rest:
                self.bound.add(node.rest)
                rebound.add(node.rest)
        for name in rebound:
            self.imported.pop(name, None)

    def run(self) -> list[Problem]:
        self.visit(self.tree)
        self.problems.extend(_entry_problems(self.tree))
        return self.problems

    def add(self, rule: Rule, message: str, node: ast.AST | None = None) -> None:
        line = getattr(node, "lineno", None)
        col = getattr(node, "col_offset", None)
        self.problems.append(Problem(rule, message, line, None if col is None else col + 1))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in ALLOWED_IMPORTS:
                top = alias.name.split(".")[0]
                hint = f" (import {top} itself)" if top in ALLOWED_IMPORTS else ""
                self.add(Rule.FORBIDDEN_IMPORT, f"{alias.name} is not allowed{hint} (allowed: {_allowed()})", node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        if node.level or node.module not in ALLOWED_IMPORTS:
            self.add(Rule.FORBIDDEN_IMPORT, f"{module or '.'} is not allowed (allowed: {_allowed()})", node)
            return
        members = FACADE_MEMBERS[node.module]
        for alias in node.names:
            if alias.name != "*" and alias.name not in members:
                self.add(Rule.FORBIDDEN_IMPORT, f"{node.module}.{alias.name} is not available in the sandbox", node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.add(Rule.FORBIDDEN_SYNTAX, "class definitions are not allowed in the sandbox; use functions, "
                 "dicts and lists", node)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if (isinstance(node.ctx, ast.Load) and node.id in UNAVAILABLE_BUILTINS and node.id not in self.bound
                and not node.id.startswith("_")):  # RestrictedPython reports "_" names itself
            self.add(Rule.FORBIDDEN_NAME, f"{node.id} is not available in the sandbox", node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        reason = FORBIDDEN_ATTRIBUTES.get(node.attr)
        if reason is not None:
            self.add(Rule.FORBIDDEN_ATTRIBUTE, f".{node.attr} is not allowed: {reason}", node)
        elif isinstance(node.value, ast.Name) and node.value.id in self.imported and not node.attr.startswith("_"):
            module = self.imported[node.value.id]
            if not isinstance(node.ctx, ast.Load):
                self.add(Rule.FORBIDDEN_ATTRIBUTE,
                         f"modules are read-only in the sandbox: {module}.{node.attr} cannot be changed", node)
            elif node.attr not in FACADE_MEMBERS[module]:
                self.add(Rule.FORBIDDEN_ATTRIBUTE, f"{module}.{node.attr} is not available in the sandbox", node)
        self.generic_visit(node)


def _entry_problems(tree: ast.Module) -> list[Problem]:
    found: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in ENTRY_POINTS:
            found[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in ENTRY_POINTS:
                    found[target.id] = node.value if isinstance(node.value, ast.Lambda) else node
    if not {"on_board", "off_board"} & set(found):
        return [Problem(Rule.MISSING_ENTRY, "define on_board(window, params, state) and/or "
                        "off_board(results, params, state) at the top level of the module")]
    problems = []
    for name, entry in found.items():
        if not isinstance(entry, (ast.FunctionDef, ast.Lambda)):
            continue  # `on_board = something`: checked when it is called
        args = entry.args
        positional = len(args.posonlyargs) + len(args.args)
        required = positional - len(args.defaults)
        want = ENTRY_POINTS[name]
        takes = (required <= want <= positional or (args.vararg is not None and required <= want))
        kw_required = any(d is None for d in args.kw_defaults)
        if not takes or kw_required:
            problems.append(Problem(Rule.MISSING_ENTRY, f"{name} must take ({ENTRY_SIGNATURES[name]})",
                                    getattr(node, "lineno", None)))
    return problems


# --- the restricted world ----------------------------------------------------------------


def _plain(value: Any) -> Any:
    """An exception argument as user code may see it: plain scalars as they are,
    anything else by its type's name only."""
    if value is None or type(value) in (bool, int, float, str, bytes):
        return value
    return f"<{type(value).__name__}>"


def guarded_getattr(obj: Any, name: str, default: Any = None) -> Any:
    """`_getattr_`: RestrictedPython's safer_getattr, and stricter."""
    if type(name) is not str:
        raise TypeError("attribute names are str")
    if name.startswith("_"):
        raise ForbiddenAttribute(f".{name} is not allowed: names starting with '_' are not available in the sandbox")
    reason = FORBIDDEN_ATTRIBUTES.get(name)
    if reason is not None:
        raise ForbiddenAttribute(f".{name} is not allowed: {reason}")
    if isinstance(obj, _MODULE_LIKE):
        raise ForbiddenAttribute(f"attributes of {type(obj).__name__} objects are not available in the sandbox")
    if isinstance(obj, BaseException):
        if name == "args":
            return tuple(_plain(a) for a in obj.args)
        raise ForbiddenAttribute(f".{name} of an exception is not available in the sandbox; use .args or str(e)")
    try:
        value = safer_getattr(obj, name, raise_)  # type: ignore[no-untyped-call]  # RestrictedPython: unannotated
    except NotImplementedError as exc:  # safer_getattr's refusals (format, string.Formatter)
        raise ForbiddenAttribute(str(exc)) from None
    if isinstance(obj, (np.ndarray, np.generic)) and callable(value):
        return _method(value, f"{type(obj).__name__}.{name}", METHOD_SPECS.get(name))
    if isinstance(obj, type) and issubclass(obj, (np.ndarray, np.generic)) and callable(value):
        # np.float64.astype(x, "S8"): the same method through its type, the same rules
        return _method(value, f"{obj.__name__}.{name}", TYPE_METHOD_SPECS.get(name))
    return value


def _method(value: Any, name: str, spec: Spec | None) -> Guarded:
    """A method of an array or numpy scalar (or of their types) within its
    allow-list (facade.METHOD_SPECS); a method not listed is not available."""
    if spec is None:
        raise ForbiddenAttribute(f".{name.rsplit('.', 1)[-1]} is not available in the sandbox "
                                 "(oodida check --allowed lists the array methods that are)")
    return Guarded(value, name, spec)


class _ItemsOnly:
    """What `_write_` hands back for a numpy array: item writes (`a[i] = x`, which
    numpy refuses on a read-only window), never attribute writes (`a.shape = ...`,
    `a.strides = ...`, `a.dtype = ...` reinterpret memory)."""

    __slots__ = ("ob",)
    ob: Any

    def __init__(self, ob: Any) -> None:
        object.__setattr__(self, "ob", ob)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.ob[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.ob[key]

    def __setattr__(self, name: str, value: Any) -> None:
        raise ForbiddenAttribute(f"setting .{name} of an array is not allowed in the sandbox")

    def __delattr__(self, name: str) -> None:
        raise ForbiddenAttribute(f"deleting .{name} of an array is not allowed in the sandbox")


class _Refused:
    """What `_write_` hands back for anything else: every write refused."""

    __slots__ = ("what",)
    what: str

    def __init__(self, what: str) -> None:
        object.__setattr__(self, "what", what)

    def __setitem__(self, key: Any, value: Any) -> None:
        raise ForbiddenWrite(f"changing items of {self.what} is not allowed in the sandbox")

    def __delitem__(self, key: Any) -> None:
        raise ForbiddenWrite(f"deleting items of {self.what} is not allowed in the sandbox")

    def __setattr__(self, name: str, value: Any) -> None:
        raise ForbiddenAttribute(f"changing attributes of {object.__getattribute__(self, 'what')} is not "
                                 "allowed in the sandbox")

    def __delattr__(self, name: str) -> None:
        self.__setattr__(name, None)


_IMMUTABLE = frozenset({tuple, str, bytes, int, float, bool, complex, frozenset, type(None), range})


def guarded_write(ob: Any) -> Any:
    """`_write_`: dicts and lists as they are; arrays for item writes only; types
    whose writes fail anyway as they are (their own error says why); anything else
    (facades, flags, functions, signals, exceptions) refuses every write."""
    t = type(ob)
    if t is dict or t is list or t is set:
        return ob
    if t is np.ndarray:
        return _ItemsOnly(ob)
    if t in _IMMUTABLE:
        return ob
    return _Refused(_describe(ob))


def _describe(ob: Any) -> str:
    if isinstance(ob, (Facade, Guarded)):
        return repr(ob)
    return f"a {type(ob).__name__} object"


def _getitem(obj: Any, key: Any) -> Any:
    return obj[key]


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "&=": operator.iand, "|=": operator.ior, "^=": operator.ixor,
    "@=": operator.imatmul,
}


def _inplacevar(op: str, x: Any, y: Any) -> Any:
    return _INPLACE[op](x, y)


def _apply(f: Any, *args: Any, **kwargs: Any) -> Any:
    return f(*args, **kwargs)


class BoundedPrint(PrintCollector):
    """print() output (RestrictedPython's `_print_`), at most MAX_PRINT characters
    per call across all of a module's functions; beyond that it is counted and
    dropped, so a print flood costs no memory. `printed` reads what was kept, with
    a note of what was not. The budget is class-wide and reset by load_module and
    call_entry (the worker runs one call at a time); user code cannot reach it."""

    used = 0
    dropped = 0

    def write(self, text: str) -> None:
        if type(text) is not str:
            text = str(text)
        room = MAX_PRINT - BoundedPrint.used
        if room < len(text):
            BoundedPrint.dropped += len(text) - max(room, 0)
            text = text[:max(room, 0)]
        if text:
            BoundedPrint.used += len(text)
            self.txt.append(text)

    def __call__(self) -> str:
        text = "".join(self.txt)
        if BoundedPrint.dropped:
            text += f"\n[... {BoundedPrint.dropped} more characters of output not kept]\n"
        return text

    @staticmethod
    def reset() -> None:
        BoundedPrint.used = 0
        BoundedPrint.dropped = 0


def _import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
    """`__import__`: the facade for an allowed name, nothing else."""
    if not level and type(name) is str and name in ALLOWED_IMPORTS:
        namespace = globals if type(globals) is dict else {}
        facades = namespace.get("__sandbox_facades__")
        return facades[name] if facades else FACADES[name]()
    # numpy's C code imports its own helpers lazily (`numpy._core._methods` for
    # ndarray.mean) through the builtins of the calling frame: ours. User code cannot
    # name such a module (the compile check refuses dotted and underscored imports,
    # and `__import__` itself), so a numpy submodule already loaded is numpy talking
    # to itself. It is never loaded here: no file is opened after the filter.
    if not level and type(name) is str and name.startswith("numpy.") and name in sys.modules:
        return sys.modules[name]
    raise ForbiddenImport(f"{name} is not allowed (allowed: {_allowed()})")


def make_globals(name: str, filename: str = "<module>") -> dict[str, Any]:
    """A fresh global namespace for one module: its own builtins dict and its own
    facade objects, so nothing in it is shared mutable state."""
    return {
        "__builtins__": dict(BUILTINS, __import__=_import),
        "__name__": name,
        "__sandbox_filename__": filename,
        "__sandbox_facades__": {n: make() for n, make in FACADES.items()},
        "_getattr_": guarded_getattr,
        "_getitem_": _getitem,
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": guarded_write,
        "_inplacevar_": _inplacevar,
        "_print_": BoundedPrint,
        "_apply_": _apply,
    }


def load_module(source: str, filename: str = "<module>") -> dict[str, Any]:
    """Compile (PolicyError if refused) and run the module's top level in a fresh
    restricted namespace; the namespace. A breach while it runs is a Violation."""
    code = compile_module(source, filename)
    namespace = make_globals(filename.rsplit("/", 1)[-1].removesuffix(".py") or "module", filename)
    BoundedPrint.reset()
    violation = None
    try:
        exec(code, namespace)  # noqa: S102 — the restricted code, in its restricted namespace
    except BaseException as exc:  # noqa: BLE001 — translated, never re-raised as is
        violation = translate(exc, filename)
        _scrub(exc)
        del exc
    if violation is not None:
        raise violation  # outside the except block: no __context__ to the module's frames
    return namespace


def call_entry(namespace: dict[str, Any], entry: str, *args: Any, filename: str | None = None) -> Any:
    """Call one of the module's entry points; its return value as is (check it with
    results.check_result). Anything it raises comes out as one Violation."""
    if filename is None:
        filename = namespace.get("__sandbox_filename__", "<module>")
    fn = namespace.get(entry) if entry in ENTRY_POINTS else None
    if not isinstance(fn, types.FunctionType):
        raise Violation(Rule.MISSING_ENTRY, f"the module does not define {entry}({ENTRY_SIGNATURES.get(entry, '')})")
    BoundedPrint.reset()
    violation = None
    try:
        return fn(*args)
    except BaseException as exc:  # noqa: BLE001 — translated, never re-raised as is
        violation = translate(exc, filename)
        _scrub(exc)
        del exc
    raise violation


def _scrub(exc: BaseException) -> None:
    """Drop every traceback (and the locals of finished frames) along the chain."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if e.__traceback__ is not None:
            traceback.clear_frames(e.__traceback__)
            e.__traceback__ = None
        for linked in (e.__context__, e.__cause__, *getattr(e, "exceptions", ())):
            if isinstance(linked, BaseException):
                stack.append(linked)
        e.__context__ = e.__cause__ = None


def _user_line(exc: BaseException, filename: str) -> int | None:
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 300
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 20
_SHORT.maxlevel = 3


def _message(exc: BaseException) -> str:
    """The exception's text, cut short: a module can raise ValueError([0] * 10**7)."""
    try:
        if all(type(a) in (str, int, float, bool, type(None)) for a in exc.args):
            text = str(exc)
        else:
            text = ", ".join(_SHORT.repr(a) for a in exc.args)
    except Exception:  # noqa: BLE001 — e.g. an int argument too long to print
        text = "(the message could not be shown)"
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + " [...]"


def translate(exc: BaseException, filename: str) -> Violation:
    """An exception from user code as a rule, a message and a line: text only."""
    line = _user_line(exc, filename)
    if isinstance(exc, (ForbiddenAttribute, MissingMember)):
        return Violation(Rule.FORBIDDEN_ATTRIBUTE, _message(exc), line)
    if isinstance(exc, ForbiddenWrite):
        return Violation(Rule.FORBIDDEN_ATTRIBUTE, _message(exc), line)
    if isinstance(exc, ImportError):  # the hook's refusals, and `from numpy import x` of a missing x
        return Violation(Rule.FORBIDDEN_IMPORT, _message(exc), line)
    if isinstance(exc, NameError) and getattr(exc, "name", None) in UNAVAILABLE_BUILTINS:
        return Violation(Rule.FORBIDDEN_NAME, f"{exc.name} is not available in the sandbox", line)
    if isinstance(exc, MemoryError):
        return Violation(Rule.MEMORY, "out of memory (MemoryError)", line)
    if isinstance(exc, RecursionError):
        return Violation(Rule.ERROR, "RecursionError: recursion too deep", line)
    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        return Violation(Rule.ERROR, f"{type(exc).__name__} is not allowed in the sandbox", line)
    if isinstance(exc, ForbiddenDtype):
        return Violation(Rule.ERROR, f"ValueError: {_message(exc)}", line)
    name = type(exc).__name__
    message = _message(exc)
    return Violation(Rule.ERROR, f"{name}: {message}" if message else name, line)


class Signal:
    """One signal of a window as user code sees it: `t` (timestamps, s) and `v`
    (values), read-only float64 arrays; nothing else, and nothing can be set."""

    __slots__ = ("t", "v")
    t: np.ndarray
    v: np.ndarray

    def __init__(self, t: Any, v: Any) -> None:
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "v", v)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("window signals are read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("window signals are read-only")

    def __len__(self) -> int:
        return len(self.v)

    def __repr__(self) -> str:
        return f"Signal({len(self.v)} samples)"

    def __reduce__(self) -> Any:
        raise TypeError("window signals cannot be pickled")


def make_signal(t: np.ndarray, v: np.ndarray) -> Signal:
    """The Signal user code sees. Arrays already float64 are frozen in place (no
    copy: the caller hands over private copies); others are converted first."""
    arrays = []
    for a in (t, v):
        if type(a) is not np.ndarray or a.dtype != np.float64:
            a = np.array(a, dtype=np.float64)
        if a.ndim != 1:
            raise ValueError(f"a signal's arrays are one-dimensional, not of shape {a.shape}")
        a.flags.writeable = False
        arrays.append(a)
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(f"a signal's t and v differ in length ({len(arrays[0])} and {len(arrays[1])})")
    return Signal(arrays[0], arrays[1])
