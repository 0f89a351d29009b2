"""Text from modules is inert wherever it is shown: the results table, the status
table, deploy progress, and every log line (a newline in a module's message would
otherwise forge a record, an ANSI escape would drive the reader's terminal)."""

from __future__ import annotations

import io
import logging
import re

import pytest

from oodida.commands.deploy import render_deploy_event
from oodida.commands.render import render_report
from oodida.core import logs
from oodida.core.text import inert
from oodida.wire.messages import DeployAnswer, DeployProgress, IterationReport, VehicleReport

EVIL_KEY = "\x1b[2J\nCRITICAL x"
EVIL = "\n\x1b[31mforged\r\u202e"
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def test_inert_escapes_controls_and_keeps_everything_else():
    assert (inert("\x1b[2J\nCRITICAL x\t\r\x00\x7f\x85\u202e\u2028")
            == "\\x1b[2J\\nCRITICAL x\\t\\r\\x00\\x7f\\x85\\u202e\\u2028")
    assert inert("é 日本 ▁▂▃ ── 🚗 ∞") == "é 日本 ▁▂▃ ── 🚗 ∞"
    assert inert(42) == "42"


def report() -> IterationReport:
    vehicles = {
        "car-1": VehicleReport(ok=True, code_hash="a" * 64, value={EVIL_KEY: EVIL, "n": 1}),
        "car-2": VehicleReport(ok=False, code_hash="a" * 64, error=f"error: ValueError: {EVIL_KEY}{EVIL}"),
        "car-3": VehicleReport(ok=True, code_hash="a" * 64, value=[EVIL, {EVIL_KEY: 1}]),
    }
    return IterationReport(id=1, assignment=4, iteration=1, iterations=1, status="partial", vehicles=vehicles,
                           missing=[], started=0.0, closed=0.5, fleet={"mean": {EVIL_KEY: 1.0}},
                           reason=f"off-board step failed: {EVIL}", code_hash="a" * 64)


@pytest.mark.parametrize("methods", [[], None, ["mean"]])
def test_the_results_table_shows_module_text_escaped(methods):
    text = render_report(report(), methods=methods)
    assert not CONTROL.search(text), repr(text)
    assert "\\x1b[2J\\nCRITICAL x" in text or "\\\\x1b" in text
    assert not any(line.startswith("CRITICAL") for line in text.splitlines())


def test_deploy_progress_shows_a_vehicles_refusal_escaped():
    reply = DeployProgress(id=1, answers=[DeployAnswer(vehicle="car-1", ok=False, error=f"refused: {EVIL}",
                                                       elapsed=0.1)])
    text = render_deploy_event(reply)
    assert not CONTROL.search(text) and "\\x1b[31mforged" in text


def test_a_log_line_quotes_control_characters_and_forges_no_record(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        for fmt in ("text", "journal"):
            logs.setup_logging("info", fmt=fmt)
            logging.getLogger("oodida.server.runner").warning("assignment %d: off-board step failed: %s", 3,
                                                       f"error: ValueError: {EVIL_KEY}{EVIL}")
            try:
                raise RuntimeError("ours")
            except RuntimeError:
                logging.getLogger("oodida.server.app").exception("request %r failed", EVIL_KEY)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert not CONTROL.search(stream.getvalue())
    records = [ln for ln in lines if re.match(r"^(<\d>|\d{4}-\d\d-\d\d )", ln)]
    assert len(records) == 4  # two records a format, each one line; no forged one
    assert not any(ln.startswith("CRITICAL") for ln in lines)
    assert "off-board step failed: error: ValueError: \\x1b[2J\\nCRITICAL x\\n\\x1b[31mforged\\r\\u202e" in records[0]
    assert "Traceback (most recent call last):" in lines  # our own traceback keeps its lines


def test_any_refusal_fits_the_protocols_limit():
    from oodida.server.modules import fit

    long = "the module breaks the sandbox policy:\n" + "\n".join(f"m.py: line {i}: " + "x" * 200 for i in range(100))
    text = fit(long)
    assert len(text) <= 4096 and text.startswith("the module breaks the sandbox policy:\nm.py: line 0: ")
    assert text.splitlines()[-1].startswith("... and ") and text.splitlines()[-1].endswith(" more")
    assert fit("short\nreason") == "short\nreason"
    assert len(fit("x" * 10_000)) <= 4096
