"""What the compile policy costs: the check is linear in the module's size, and a
method call within its allow-list costs a little more than numpy's own.

Run on demand, not as a test:

    .venv/bin/python bench/policy_check.py [--sizes 1000,2000,4000,8000] [--calls 20000]

Figures, each against a baseline measured in the same run:

1. `check_source` on modules of N lines of `_a = 1` (every line a RestrictedPython
   error, the shape that froze the server): seconds, and the ratio of the largest
   to the smallest against the ratio of their sizes (linear: the same; the old
   check, quadratic: the square). The old merge (every RestrictedPython error
   compared with every problem found, a list scan) is timed on the same problems as
   the baseline for the merge step itself.
2. `a.sum()` of a 100-element array through the sandbox's `_getattr_` (the method
   wrapped within its allow-list) against the bare `a.sum()`, per call.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from oodida.sandbox.policy import _restricted_problem, check_source, guarded_getattr


def module(lines: int) -> str:
    return "def on_board(window, params, state):\n    return 1\n" + "_a = 1\n" * lines


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def old_merge(problems, errors):
    out = list(problems)
    for message in errors:
        p = _restricted_problem(message)
        if not any(q.line == p.line and q.rule is p.rule for q in out):
            out.append(p)
    return out


def new_merge(problems, errors):
    out = list(problems)
    seen = {(p.line, p.rule) for p in out}
    for message in errors:
        p = _restricted_problem(message)
        if (p.line, p.rule) not in seen:
            seen.add((p.line, p.rule))
            out.append(p)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,2000,4000,8000")
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print("1. check_source on N lines of `_a = 1`")
    checks = {}
    for n in sizes:
        checks[n] = timed(lambda n=n: check_source(module(n)))
        print(f"   {n:>6} lines: {checks[n]:.3f} s ({checks[n] / n * 1e6:.1f} us a line)")
    lo, hi = sizes[0], sizes[-1]
    print(f"   ratio {hi} / {lo} lines: {checks[hi] / checks[lo]:.1f}x for {hi / lo:.0f}x the size "
          f"(quadratic would be {(hi / lo) ** 2:.0f}x)")
    errors = [f'Line {i + 3}: "_a" is an invalid variable name because it starts with "_"' for i in range(hi)]
    problems: list = []  # as for this shape: the AST checker finds nothing, every error is new
    new = timed(lambda: new_merge(problems, errors))
    old = timed(lambda: old_merge(problems, errors), repeat=1)
    print(f"   the merge step alone on {hi} errors: set {new * 1000:.1f} ms, old list scan (baseline) "
          f"{old * 1000:.0f} ms: {old / new:.0f}x")
    a = np.ones(100)
    raw = timed(lambda: [a.sum() for _ in range(args.calls)]) / args.calls
    guarded = timed(lambda: [guarded_getattr(a, "sum")() for _ in range(args.calls)]) / args.calls
    print(f"2. a.sum() of 100 elements: bare {raw * 1e6:.2f} us, within its allow-list {guarded * 1e6:.2f} us "
          f"({guarded / raw:.2f}x)")


if __name__ == "__main__":
    main()
