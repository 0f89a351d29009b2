"""An assignment from a TOML file and/or command-line flags, checked by the schema.

Flags override the file, key by key; the result goes through the same msgspec
validation the server applies, so a typo is caught before anything is sent.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import msgspec

from oodida.core.errors import OodidaError
from oodida.wire.messages import AssignmentSpec


class SpecError(OodidaError, ValueError):
    """The assignment as written cannot be run; the message says which part and why."""


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
