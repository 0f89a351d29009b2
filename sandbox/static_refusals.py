"""What a module's first call would certainly be refused for, found before it is deployed:
return values that can never be sent, and facade calls their allow-lists refuse.

`results.check_result` refuses at run time whatever is not plain data. Some refusals
are certain from the text alone, and an analyst should hear of them at submit or
deploy rather than from every vehicle at the first call that reaches them. Found
here, only where it holds whatever the data, params and state are:

- an entry point that is a generator function (it contains `yield`): every call
  returns a generator;
- `return` (in the entry point's own body, not a nested function's) of an
  expression whose value is certain to be refused: a lambda, a set or generator
  expression, a set or dict comprehension's set kin, a call of a builtin that makes
  an iterator or a set (`set`, `frozenset`, `iter`, `map`, `filter`, `zip`,
  `enumerate`, `reversed`, `range`) where the module never binds that name, a name
  the module binds only with `def` (a function) or only with `except … as` (an
  exception), an imported facade (`np`) or one of its functions or types
  (`np.mean`, `np.float64`), a signal of the window (`window["SPEED"]`, where the
  function never rebinds `window`), a dict literal with a key that is not a str;
  and a list, tuple or dict literal that holds any of these.

And a call of a facade function that its allow-list refuses whatever the
arguments' values: a keyword it does not take (`np.clip(v, 0, 1, where=m)`), more
positional arguments than it takes (`np.sqrt(v, v)`: an `out`) or fewer than it
needs (`np.where(c)`), where the module never rebinds the facade's name and the
call spreads no `*args` or `**kwargs`. Methods of arrays are not: the receiver's
type is not known from the text.

Not knowable from the text (left to the run-time check): what a call of the
module's own or a facade function returns, a dtype argument's value, the size of a value, a dtype (a complex
array), anything reached through a variable the function assigns. A refused
`return` may sit in a branch that a given call never takes; it is still refused,
since every call that reaches it fails.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from oodida.sandbox.errors import Problem, Rule
from oodida.sandbox.facade import FACADE_MEMBERS, FACADES, Guarded

ENTRIES = ("on_board", "off_board", "migrate")
_ITERATOR_BUILTINS = frozenset({"set", "frozenset", "iter", "map", "filter", "zip", "enumerate", "reversed", "range"})
_NEVER = {ast.Lambda: "a function (lambda)", ast.Set: "a set", ast.SetComp: "a set",
          ast.GeneratorExp: "a generator"}


def static_refusals(tree: ast.Module) -> list[Problem]:
    """A DISALLOWED_RETURN problem, with its line, for every certain refusal of a
    return value; an ERROR problem for every facade call certain to be refused."""
    bindings = _Bindings(tree)
    problems = _refused_calls(tree, bindings)
    for node in tree.body:
        if not (isinstance(node, ast.FunctionDef) and node.name in ENTRIES):
            continue
        own = list(_own_nodes(node))
        yields = [n for n in own if isinstance(n, (ast.Yield, ast.YieldFrom))]
        if yields:
            problems.append(Problem(Rule.DISALLOWED_RETURN, f"{node.name} contains yield: every call returns a "
                                    "generator, which cannot be sent; return a list", node.lineno))
            continue
        window = _window_param(node, own)
        for ret in own:
            if isinstance(ret, ast.Return) and ret.value is not None:
                what = _never_sendable(ret.value, bindings, window)
                if what is not None:
                    problems.append(Problem(Rule.DISALLOWED_RETURN, f"{node.name} returns {what}, which can never "
                                            "be sent; return None, bool, int, float, str, bytes, lists, tuples, "
                                            "dicts with str keys, or numeric numpy arrays", ret.lineno))
    return problems


def _own_nodes(fn: ast.FunctionDef) -> Iterator[ast.AST]:
    """Every node of the function's body, not descending into nested scopes."""
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
    stack: list[ast.AST] = [n for n in fn.body if not isinstance(n, scopes)]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, scopes):
                stack.append(child)


def _window_param(fn: ast.FunctionDef, own: list[ast.AST]) -> str | None:
    """The name of on_board's window parameter if the function never rebinds it."""
    if fn.name != "on_board":
        return None
    params = [*fn.args.posonlyargs, *fn.args.args]
    if not params:
        return None
    name = params[0].arg
    for n in own:
        if isinstance(n, ast.Name) and n.id == name and not isinstance(n.ctx, ast.Load):
            return None
    for n in ast.walk(fn):  # a nested function's `nonlocal window` may rebind it
        if isinstance(n, (ast.Global, ast.Nonlocal)) and name in n.names:
            return None
    return name


class _Bindings:
    """How the module binds each name: only by a top-level `def`, only by
    `except … as`, only by `import` of a facade, or otherwise."""

    def __init__(self, tree: ast.Module) -> None:
        kinds: dict[str, set[str]] = {}

        def bind(name: str, kind: str) -> None:
            kinds.setdefault(name, set()).add(kind)

        top_defs = {id(n) for n in tree.body if isinstance(n, ast.FunctionDef)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                bind(node.id, "other")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bind(node.name, "def" if id(node) in top_defs else "other")
            elif isinstance(node, ast.arg):
                bind(node.arg, "other")
            elif isinstance(node, ast.ExceptHandler) and node.name:
                bind(node.name, "except")
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                for name in node.names:
                    bind(name, "other")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    name = alias.asname or alias.name.split(".")[0]
                    bind(name, f"import:{alias.name}" if alias.name in FACADES and "." not in alias.name else "other")
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    member = node.module in FACADE_MEMBERS and alias.name in FACADE_MEMBERS[node.module]
                    bind(alias.asname or alias.name, f"member:{node.module}.{alias.name}" if member else "other")
            elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
                bind(node.name, "other")
            elif isinstance(node, ast.MatchMapping) and node.rest:
                bind(node.rest, "other")
        self.bound = frozenset(kinds)
        self.kinds = {name: next(iter(k)) for name, k in kinds.items() if len(k) == 1}

    def only(self, name: str) -> str | None:
        return self.kinds.get(name)


def _facade_member(module: str, member: str) -> str | None:
    """What a facade member is, when it can never be sent (a function or a type)."""
    if member not in FACADE_MEMBERS.get(module, ()):
        return None
    value = getattr(FACADES[module](), member)
    return f"the sandbox's {module}.{member}" if callable(value) else None


def _never_sendable(expr: ast.expr, bindings: _Bindings, window: str | None) -> str | None:
    for node_type, what in _NEVER.items():
        if isinstance(expr, node_type):
            return what
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        name = expr.func.id
        if name in _ITERATOR_BUILTINS and name not in bindings.bound:
            return f"{'a set' if name in ('set', 'frozenset') else 'an iterator'} ({name}(...))"
        return None
    if isinstance(expr, ast.Name):
        kind = bindings.only(expr.id)
        if kind == "def":
            return f"the function {expr.id}"
        if kind == "except":
            return f"the exception {expr.id}"
        if kind is not None and kind.startswith("import:"):
            return f"the module {kind.removeprefix('import:')}"
        if kind is not None and kind.startswith("member:"):
            module, _, member = kind.removeprefix("member:").partition(".")
            return _facade_member(module, member)
        return None
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
        kind = bindings.only(expr.value.id)
        if kind is not None and kind.startswith("import:"):
            return _facade_member(kind.removeprefix("import:"), expr.attr)
        return None
    if isinstance(expr, ast.Subscript) and isinstance(expr.value, ast.Name) and window is not None:
        if expr.value.id == window:
            return "a signal of the window (a Signal object: return its .v or .t, or a number from them)"
        return None
    if isinstance(expr, ast.Dict):
        for key in expr.keys:
            if isinstance(key, ast.Constant) and type(key.value) is not str:
                return f"a dict with the key {key.value!r} (keys are str)"
        children = [k for k in expr.keys if k is not None] + list(expr.values)
    elif isinstance(expr, (ast.List, ast.Tuple)):
        children = [e.value if isinstance(e, ast.Starred) else e for e in expr.elts]
    else:
        return None
    for child in children:
        found = _never_sendable(child, bindings, window)
        if found is not None:
            return found
    return None


def _facade_function(func: ast.expr, bindings: _Bindings) -> tuple[str, object] | None:
    """("numpy.clip", its Guarded) for `np.clip` or a `from numpy import clip` name."""
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        kind = bindings.only(func.value.id)
        if kind is None or not kind.startswith("import:"):
            return None
        module, member = kind.removeprefix("import:"), func.attr
    elif isinstance(func, ast.Name):
        kind = bindings.only(func.id)
        if kind is None or not kind.startswith("member:"):
            return None
        module, _, member = kind.removeprefix("member:").partition(".")
    else:
        return None
    if member not in FACADE_MEMBERS.get(module, ()):
        return None  # the compile check says so already
    value = getattr(FACADES[module](), member)
    return (f"{module}.{member}", value) if isinstance(value, Guarded) else None


def _refused_calls(tree: ast.Module, bindings: _Bindings) -> list[Problem]:
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        found = _facade_function(node.func, bindings)
        if found is None:
            continue
        name, guarded = found
        spec = object.__getattribute__(guarded, "_spec")
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            continue  # *args or **kwargs: counts and names not known
        why = None
        unknown = [k.arg for k in node.keywords if k.arg not in spec.keywords]
        if unknown:
            allowed = ", ".join(sorted(spec.keywords)) or "none"
            why = f"keyword argument {unknown[0]!r} is not allowed in the sandbox (allowed: {allowed})"
        elif spec.max_positional is not None and len(node.args) > spec.max_positional:
            why = (f"takes at most {spec.max_positional} positional arguments in the sandbox (no out argument: "
                   "functions return new arrays)")
        elif len(node.args) < spec.min_positional:
            why = f"takes at least {spec.min_positional} positional arguments in the sandbox"
        if why is not None:
            problems.append(Problem(Rule.ERROR, f"{name}: {why}; every call of it here is refused", node.lineno))
    return problems
