"""open_source: the factory refuses what it does not know, by name."""

from __future__ import annotations

import ast
import sys
import uuid
from pathlib import Path

import pytest

from oodida.hw.sources import BusSource, LogReplay, open_source

HW = Path(__file__).resolve().parents[2] / "hw"
ALLOWED_IMPORTS = {"can", "cantools", "numpy", "serial", "pynmea2", "oodida", "hw", "__future__"}


def test_log_kind_builds_a_replay(tiny_log: Path) -> None:
    source = open_source("log", path=tiny_log, speed=0, channel="can0")
    assert isinstance(source, LogReplay)
    assert "tiny.log" in source.describe()


def test_bus_kind_builds_a_bus_source() -> None:
    with open_source("bus", interface="virtual", channel=f"oodida-{uuid.uuid4().hex}") as source:
        assert isinstance(source, BusSource)


def test_unknown_kind_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="unknown source kind 'serial'; allowed: bus, log"):
        open_source("serial", port="/dev/ttyUSB0")


def test_unknown_option_is_refused_with_a_suggestion(tiny_log: Path) -> None:
    expected = r"'sped' \(did you mean 'speed'\?\).*allowed: path, speed, offset, loop, channel"
    with pytest.raises(ValueError, match=expected):
        open_source("log", path=tiny_log, sped=2)


def test_missing_option_is_named() -> None:
    with pytest.raises(ValueError, match=r"needs option.*channel"):
        open_source("bus", interface="virtual")


def test_hw_imports_only_what_it_may() -> None:
    # DESIGN.md: hw may import stdlib, python-can, cantools, pyserial, numpy and oodida.core.errors;
    # pynmea2 too, since the serial GPS (DESIGN.md's hw/) needs an NMEA parser.
    for module in HW.glob("*.py"):
        tree = ast.parse(module.read_text(), filename=str(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in ALLOWED_IMPORTS or top in sys.stdlib_module_names, (module.name, name)
                if top == "oodida":
                    assert name == "oodida.core.errors" or name.split(".")[:2] == ["oodida", "hw"], (module.name, name)
