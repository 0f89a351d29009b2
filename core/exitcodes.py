"""What `oodida`'s exit status means, in one place: the dispatcher, every command,
`--help` and docs/analysts.md say the same.

The table is small on purpose, so scripts can branch on it:

    0    done: every iteration complete (or reached its quorum)
    1    refused or failed: the server said no, the assignment failed or was
         cancelled, a module broke the sandbox policy, a request failed
    2    bad usage or configuration: a mistyped flag, a missing credential file,
         a config the service cannot start with
    3    done, but some iterations were partial or failed (submit --wait)
    130  interrupted (Ctrl-C); an assignment already submitted goes on
    141  the reader of the output went away (`oodida status | head -1`)
"""

from __future__ import annotations

import argparse
import enum
from collections.abc import Iterable


class Exit(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    PARTIAL = 3
    INTERRUPTED = 130
    CLOSED_PIPE = 141  # 128 + SIGPIPE, as a shell reports a process that SIGPIPE killed


HELP = """exit status:
  0    done: every iteration complete (or closed at its quorum)
  1    refused or failed (the server said no, the assignment failed or was cancelled)
  2    bad usage or configuration
  3    done, but some iterations were partial or failed (submit --wait)
  130  interrupted (Ctrl-C); a submitted assignment goes on: oodida cancel ID stops it
  141  the output's reader went away (| head)
"""

# Iteration statuses that count as a success for the exit status: "quorum" is an
# iteration closed as the analyst asked (enough answers), not a partial one.
GOOD_ITERATIONS = frozenset({"complete", "quorum"})
BAD_ITERATIONS = frozenset({"partial", "failed"})


def for_assignment(final: str, iterations: Iterable[str]) -> Exit:
    """The exit status of waiting for an assignment: its final state and the status
    of every iteration seen."""
    if final != "done":
        return Exit.FAILED
    return Exit.PARTIAL if any(s in BAD_ITERATIONS for s in iterations) else Exit.OK


_interrupt_note: str | None = None


def on_interrupt(note: str | None) -> None:
    """What to tell the user if Ctrl-C comes now (e.g. that the assignment goes on and
    how to cancel it); the dispatcher prints it and exits 130."""
    global _interrupt_note
    _interrupt_note = note


def still_running(assignment: int) -> str:
    """What Ctrl-C on `submit --wait` tells: the assignment is the server's now."""
    return (
        f"assignment {assignment} goes on on the server; follow it with: oodida results {assignment} --follow; "
        f"stop it with: oodida cancel {assignment}"
    )


def interrupt_note() -> str | None:
    return _interrupt_note


def interrupted() -> Exit:
    """Say so on stderr, with the note if one was left (`on_interrupt`): 130."""
    import sys

    note = _interrupt_note
    print(f"\ninterrupted{'; ' + note if note else ''}", file=sys.stderr)
    return Exit.INTERRUPTED


def document(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Put HELP under the --help of `parser` and of every subcommand under it."""

    stack = [parser]
    while stack:
        p = stack.pop()
        if p.epilog is None:
            p.epilog = HELP
            if p.formatter_class is argparse.HelpFormatter:
                p.formatter_class = argparse.RawDescriptionHelpFormatter
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
    return parser
