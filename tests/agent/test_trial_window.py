"""`oodida try --window 1s` on the real drive: the first second, every sample of it."""

from __future__ import annotations

import json
from pathlib import Path

import can
import cantools

from oodida.agent.trial import main
from tests.hw.paths import DBC, LOG

MODULE = "def on_board(window, params, state):\n    return len(window['SPEED'].v)\n"


def _speed_samples_in_first_second() -> int:
    db = cantools.database.load_file(DBC, strict=False)
    speed = db.get_message_by_name("SPEED").frame_id
    with can.LogReader(LOG) as reader:
        messages = [m for m in reader if m.channel == "can0"]
    first = min(m.timestamp for m in messages)
    return sum(1 for m in messages if m.arbitration_id == speed and m.timestamp < first + 1.0)


def test_try_one_second_window_gets_every_speed_sample_of_that_second(tmp_path: Path, capsys) -> None:
    module = tmp_path / "count.py"
    module.write_text(MODULE)
    argv = [str(module), "--log", str(LOG), "--dbc", str(DBC), "--signals", "SPEED",
            "--window", "1s", "--channel", "can0", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert _speed_samples_in_first_second() == 42  # what the log holds
    assert out["window"]["samples"] == {"SPEED": 42}
    assert out["value"] == 42
