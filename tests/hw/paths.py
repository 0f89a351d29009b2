"""Where the real data lives, for fixtures and for module-level test helpers alike."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data"
LOG = DATA / "rav4-2017-comma2k19.log"
DBC = DATA / "toyota_rav4_2017.dbc"
