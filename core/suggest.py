"""Close matches for a mistyped name: signals, commands, flags.

`difflib.get_close_matches` alone misses what analysts type most: a name that adds
or drops a word (`VEHICLE_SPEED` for the DBC's `SPEED`: a ratio of 0.56, under its
0.6 cut-off) and a bare signal name against `MESSAGE.SIGNAL` ones. So a candidate
also scores on the words it shares with the name (split at `_`, `.`, `-`), and a
candidate whose bare part is one of the name's words ranks first. Pure stdlib, in
the `oodida` package, so the server (signals at submit) and the CLI (commands and
flags) use the same ranking.
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Iterable
from typing import NoReturn

_SPLIT = re.compile(r"[._\-\s]+")


def _words(text: str) -> set[str]:
    return {w for w in _SPLIT.split(text.upper()) if w}


def _bare(candidate: str) -> str:
    return candidate.rpartition(".")[2]


def score(name: str, candidate: str) -> float:
    """How alike, 0..~2: difflib's ratio (case-insensitive, against the whole name and
    its bare part), plus the share of the name's words the candidate has, plus 0.5
    when the candidate's bare part is itself one of the name's words."""
    asked = name.upper()
    whole = candidate.upper()
    bare = _bare(whole)
    ratio = max(
        difflib.SequenceMatcher(None, asked, whole).ratio(),
        difflib.SequenceMatcher(None, _bare(asked), bare).ratio(),
    )
    words, theirs = _words(asked), _words(whole)
    shared = len(words & theirs) / len(words) if words else 0.0
    exact_word = 0.5 if bare in words and bare != _bare(asked) else 0.0
    return ratio + shared + exact_word


def close_matches(name: str, candidates: Iterable[str], n: int = 5, cutoff: float = 0.6) -> list[str]:
    """The `n` candidates most like `name`, best first, each scoring at least `cutoff`.
    Ties go to the shorter (more general) name, then alphabetically."""
    unique = sorted(set(candidates))
    scored = [(score(name, c), c) for c in unique if c != name]
    scored = [(s, c) for s, c in scored if s >= cutoff]
    scored.sort(key=lambda sc: (-sc[0], len(sc[1]), sc[1]))
    return [c for _, c in scored[:n]]


def did_you_mean(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """'; did you mean A, B?' or '' when nothing is close."""
    found = close_matches(name, candidates, n=n)
    return f"; did you mean {', '.join(found)}?" if found else ""


_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")
_UNRECOGNIZED = re.compile(r"^unrecognized arguments: (.*)$")


class SuggestingParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors offer the closest command or flag.

    argparse reports a subcommand's unknown flag from the top parser, which does not
    know the subcommand's flags, so each parser notes itself when it starts parsing
    and the error looks among the flags of the innermost one (the command used)."""

    _innermost: argparse.ArgumentParser | None = None

    # untyped on purpose: it only notes itself and passes through, and argparse's own
    # signature is three overloads (generic in the namespace) a plain override cannot match
    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        SuggestingParser._innermost = self
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        inner = SuggestingParser._innermost if _UNRECOGNIZED.match(message) else None
        prog = (inner or self).prog
        self.exit(2, f"{prog}: error: {message}{self._hint(message, inner or self)}\n(see {prog} --help)\n")

    @staticmethod
    def _hint(message: str, parser: argparse.ArgumentParser) -> str:
        m = _INVALID_CHOICE.search(message)
        if m:
            return did_you_mean(m.group(1), re.findall(r"'([^']*)'", m.group(2)))
        m = _UNRECOGNIZED.match(message)
        if not m:
            return ""
        flags = {s.lstrip("-"): s for s in parser._option_string_actions if s.startswith("--")}
        hints = []
        for word in m.group(1).split():
            if word.startswith("--"):
                found = close_matches(word.partition("=")[0].lstrip("-"), flags, n=2, cutoff=0.7)
                if found:
                    hints.append(f"{word}: did you mean {' or '.join(flags[f] for f in found)}?")
        return ("; " + "; ".join(hints)) if hints else ""
