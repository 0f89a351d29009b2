"""Text from analysts' modules made inert before a person or a log sees it.

A module chooses the keys and values it returns and the messages it raises; shown
as they are, a newline forges a log record ("\\nCRITICAL ...") and an ANSI escape
clears or rewrites the analyst's terminal. `inert` writes every control character
as its escape (`\\n`, `\\x1b`, `\\u202e`), the way `repr` would, and leaves all other
text (accents, CJK, box drawing, emoji) as it is.
"""

from __future__ import annotations

import re

# C0 and C1 controls and DEL; the line and paragraph separators; the bidirectional
# overrides and isolates, which reorder what a terminal shows (CVE-2021-42574).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inert(text: str) -> str:
    """`text` with every control character escaped; the same string when it has none."""
    if type(text) is not str:
        text = str(text)
    return _CONTROL.sub(_escape, text)


def inert_lines(text: str) -> str:
    """Each line of a text we laid out ourselves, made inert: the newlines between
    the lines stay, any control character within a line is escaped."""
    return "\n".join(inert(line) for line in text.split("\n"))
