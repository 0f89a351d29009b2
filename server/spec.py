"""An assignment from a TOML file and/or command-line flags, checked by the schema.

Flags override the file, key by key; the result goes through the same msgspec
validation the server applies, so a typo is caught before anything is sent.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from oodida.errors import OodidaError
from wire.messages import AssignmentSpec


class SpecError(OodidaError, ValueError):
    """The assignment as written cannot be run; the message says which part and why."""


_WINDOW = re.compile(r"^\s*(?:(next|latest)\s*:\s*)?([0-9]*\.?[0-9]+)\s*(s|samples?)?\s*$")


def parse_window(text: str) -> dict[str, Any]:
    """`5s`, `100samples`, `latest:10s`, `next:2.5s` -> a window table."""
    m = _WINDOW.match(text)
    if not m:
        raise SpecError(f"window {text!r}: write e.g. 5s, 100samples, latest:10s")
    kind, amount, unit = m.groups()
    window: dict[str, Any] = {"amount": float(amount), "unit": "s" if unit in (None, "s") else "samples"}
    if kind:
        window["kind"] = kind
    return window


def parse_param(text: str) -> tuple[str, Any]:
    """`k=3`, `bins=[0, 10, 20]`, `q=[0.1,0.9]`: the value is read as TOML, else text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"parameter {text!r}: write NAME=VALUE")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def read_module(path: Path) -> dict[str, str]:
    """A module file as the wire carries it: its name and its text."""
    try:
        return {"name": path.name, "source": path.read_text()}
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read module {path}: {getattr(exc, 'strerror', None) or exc}") from None


def build_spec(file: str | None, overrides: dict[str, Any]) -> AssignmentSpec:
    data: dict[str, Any] = {}
    if file is not None:
        try:
            data = tomllib.loads(Path(file).read_text())
        except OSError as exc:
            raise SpecError(f"cannot read assignment {file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{file} is not valid TOML: {exc}") from None
    base = Path(file).parent if file is not None else Path.cwd()
    for key in ("on_board_module", "off_board_module"):  # a path in the file, relative to it
        if isinstance(data.get(key), str):
            data[key] = read_module(base / data[key])
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("on_board_module", "off_board_module"):
            value = read_module(Path(value))
        if key == "params":
            data.setdefault("params", {}).update(value)
        elif key == "window_kind":
            data.setdefault("window", {})["kind"] = value
        elif key == "window":
            data["window"] = {**data.get("window", {}), **value}
        else:
            data[key] = value
    try:
        return msgspec.convert(data, AssignmentSpec, strict=False)
    except msgspec.ValidationError as exc:
        where = f" in {file}" if file else ""
        raise SpecError(f"assignment{where}: {exc}") from None
