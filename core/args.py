"""How command lines spell windows and parameters, for every `oodida` command.

`oodida submit` (server package) and `oodida try` (agent package) take the same
`--window` and `--param` values; they may not import each other, so the parsing
lives here, beside the error root that every package may import.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

from oodida.core.errors import OodidaError


class ArgumentError(OodidaError, ValueError):
    """A command-line value that cannot be read; the message shows how to write it."""


_WINDOW = re.compile(r"^\s*(?:(next|latest)\s*:\s*)?([0-9]*\.?[0-9]+)\s*(s|samples?)?\s*$")


def parse_window(text: str) -> dict[str, Any]:
    """`5s`, `100samples`, `latest:10s`, `next:2.5s` -> the fields of a window."""
    m = _WINDOW.match(text)
    if not m:
        raise ArgumentError(f"window {text!r}: write e.g. 5s, 100samples, latest:10s")
    kind, amount, unit = m.groups()
    window: dict[str, Any] = {"amount": float(amount), "unit": "s" if unit in (None, "s") else "samples"}
    if kind:
        window["kind"] = kind
    return window


def parse_param(text: str) -> tuple[str, Any]:
    """`k=3`, `bins=[0, 10, 20]`, `q=[0.1,0.9]`: the value is read as TOML, else text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ArgumentError(f"parameter {text!r}: write NAME=VALUE")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value
