"""The mutation fuzzer over recorded real sessions, against a real server process:
before the handshake, and after it as a vehicle and as an analyst. The server stays
up, its memory stays bounded, an honest analyst keeps being answered, and it logs no
traceback."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.fuzz.harness import start_server
from tests.fuzz.helpers import scale
from tests.fuzz.report import Tally
from tests.fuzz.sessions import fuzz_sessions
from tests.helpers import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECONDS = 12.0
# Resident memory may grow by this much over the run. Why 160 MiB: one frame at a time
# is decoded (up to 1.2 million items, ~85 MiB of Python objects at worst, freed after);
# the 16 connections of a round buffer at most one 64 KiB read and one 16 MiB frame
# each, and the mutations make frames of at most a few hundred KiB; the rest is what
# valid mutated requests legitimately create (assignments, stored results), and the
# allocator's fragmentation. Measured: about 1 MiB in 12 s; 23 MiB over a 7-minute
# campaign (17,726 mutated sessions), most of it assignments that mutated submits made.
RSS_GROWTH_MIB = 160


def test_mutated_sessions_against_a_real_server(tmp_path, tally: Tally) -> None:
    fleet = start_server(tmp_path)
    try:
        seed = int(os.environ.get("OODIDA_FUZZ_SEED", "6"))
        watch = run(fuzz_sessions(fleet, tally, SECONDS * scale(), seed), timeout=SECONDS * scale() + 60)
    finally:
        fleet.stop()
        if tally.findings:  # keep the server's log beside the report: tmp dirs are rotated
            keep = tally.path.parent / f"server-{os.getpid()}-{seed}.log"
            shutil.copy(fleet.workdir / "server.log", keep)
            tally.found(f"server log kept in {keep}")
    figures = watch.figures()
    for key, value in figures.items():
        tally.counts[key] = value  # type: ignore[assignment]
    assert tally.inputs > 200, "too few inputs to mean anything"
    assert figures["rss_peak_mib"] - figures["rss_baseline_mib"] < RSS_GROWTH_MIB, figures
