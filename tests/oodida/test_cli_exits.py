"""Every exit status of `oodida`, through real processes (oodida/exitcodes.py has the
table): refused and failed, bad usage, partial iterations, Ctrl-C, a closed pipe, a
terminal that is not UTF-8, and completion scripts run by the shells themselves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from oodida.cli import commands
from tests.helpers import DBC, LOG

ASCII = {"LANG": "C", "LC_ALL": "C", "PYTHONIOENCODING": "ascii"}

MODULE = '''
def on_board(window, params, state):
    t, v = window["SPEED"].t, window["SPEED"].v
    if params.get("fail_after") is not None and t[0] > params["fail_after"]:
        raise ValueError("too late in the drive")
    return {"n": len(v), "sum": float(v.sum())}

def off_board(results, params, state):
    if params.get("off_fails"):
        return 1 / 0
    n = sum(r["n"] for r in results.values())
    return {"vehicles": len(results), "mean": sum(r["sum"] for r in results.values()) / n}
'''


def oodida(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
           **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oodida", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, **kw,
    )


def _try(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    module = tmp_path / "mod.py"
    module.write_text(MODULE)
    return oodida("try", str(module), "--log", str(LOG), "--dbc", str(DBC), "--signals", "SPEED",
                  "--channel", "can0", "--window", "2s", *extra, env=env)


def _no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr


# --- 0, 1, 3 from `oodida try`: a whole assignment, off board included ----------------------


def test_try_runs_on_board_on_each_vehicle_and_off_board_over_them_exit_0(tmp_path: Path) -> None:
    done = _try(tmp_path, "--vehicles", "3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["sim-1", "sim-2", "sim-3"]
    assert "complete" in lines[3] and "off board" in lines[4]
    fleet = [line for line in lines if line.strip().startswith("fleet")]
    assert fleet and "vehicles=3" in fleet[0]


def test_try_json_has_every_vehicle_and_the_fleet_equal_to_their_answers(tmp_path: Path) -> None:
    import json

    done = _try(tmp_path, "--offsets", "0,10,20", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    answers = out["vehicles"]
    assert [v["offset"] for v in answers.values()] == [0.0, 10.0, 20.0]
    n = sum(v["value"]["n"] for v in answers.values())
    assert out["off_board"]["value"]["mean"] == pytest.approx(sum(v["value"]["sum"] for v in answers.values()) / n)
    assert out["off_board"]["value"]["vehicles"] == 3


def test_try_iterations_follow_each_other_and_off_board_state_carries_over(tmp_path: Path) -> None:
    import json

    module = tmp_path / "count.py"
    module.write_text(
        "def on_board(window, params, state):\n"
        "    t = window['SPEED'].t\n"
        "    return {'first': float(t[0]), 'seen': 0 if state is None else state['iterations']}\n"
        "def off_board(results, params, state):\n"
        "    return {'iterations': 1 if state is None else state['iterations'] + 1}\n"
    )
    done = oodida("try", str(module), "--log", str(LOG), "--dbc", str(DBC), "--signals", "SPEED", "--channel",
                  "can0", "--window", "3s", "--offsets", "0,20", "--iterations", "3", "--json")
    assert done.returncode == 0, done.stderr
    outs = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["iteration"] for o in outs] == [1, 2, 3]
    assert [o["off_board"]["value"]["iterations"] for o in outs] == [1, 2, 3]
    for k, o in enumerate(outs):
        assert [v["value"]["seen"] for v in o["vehicles"].values()] == [k, k]  # off_board's value, sent back
        assert [v["offset"] for v in o["vehicles"].values()] == [3.0 * k, 20.0 + 3.0 * k]
    firsts = [o["vehicles"]["sim-1"]["value"]["first"] for o in outs]
    assert firsts[1] - firsts[0] == pytest.approx(3.0, abs=0.05)  # windows back to back


def test_try_with_some_vehicles_failing_exits_3_and_says_which(tmp_path: Path) -> None:
    first = 1533201287.0  # the drive's first timestamp: vehicles from 20 s on fail
    done = _try(tmp_path, "--offsets", "0,30", "--param", f"fail_after={first + 20}")
    assert done.returncode == 3, done.stderr
    assert "partial" in done.stdout and "sim-2: error" in done.stdout and "too late" in done.stdout


def test_try_with_off_board_failing_exits_1_with_the_reason(tmp_path: Path) -> None:
    done = _try(tmp_path, "--vehicles", "2", "--param", "off_fails=true")
    assert done.returncode == 1
    assert "failed" in done.stdout and "off_board" in done.stdout and "ZeroDivisionError" in done.stdout
    _no_traceback(done)


def test_try_on_a_terminal_that_is_not_utf8(tmp_path: Path) -> None:
    done = _try(tmp_path, "--vehicles", "2", env=ASCII)
    assert done.returncode == 0, done.stderr
    assert "complete" in done.stdout and done.stdout.isascii()


# --- 2: bad usage -----------------------------------------------------------------------------


def test_a_mistyped_command_exits_2_with_the_closest_one() -> None:
    done = oodida("sumbit")
    assert done.returncode == 2
    assert "did you mean submit?" in done.stderr
    _no_traceback(done)


def test_a_mistyped_flag_exits_2_with_the_closest_one_of_that_command() -> None:
    done = oodida("submit", "--wiat")
    assert done.returncode == 2
    assert "--wiat: did you mean --wait?" in done.stderr and "oodida submit --help" in done.stderr
    done = oodida("try", "x.py", "--log", "l", "--dbc", "d", "--signals", "S", "--vehicels", "3")
    assert done.returncode == 2 and "did you mean --vehicles?" in done.stderr


def test_missing_or_unreadable_credentials_are_configuration_errors_exit_2(tmp_path: Path) -> None:
    env = {"OODIDA_CREDENTIALS": ""}
    assert oodida("status", env=env).returncode == 2
    done = oodida("status", "--credentials", str(tmp_path / "nope"))
    assert done.returncode == 2 and "nope" in done.stderr
    _no_traceback(done)


def test_usage_lists_every_command_with_the_exit_codes_and_version() -> None:
    done = oodida("--help")
    assert done.returncode == 0
    for code in ("0 ", "1 ", "2 ", "3 ", "130", "141"):
        assert f"  {code}" in done.stdout
    from oodida.completion import _parsers

    assert set(_parsers()) == set(commands())  # every command has a parser completion sees
    from oodida.parser import build_parser

    for action in build_parser()._actions:  # and every server-side subcommand is in the usage
        for name in getattr(action, "choices", None) or {}:
            assert name in commands(), name
    assert oodida("submit", "--help").stdout.count("exit status:") == 1
    version = oodida("--version")
    assert version.returncode == 0 and version.stdout.startswith("oodida 0.")
    assert oodida().returncode == 2  # no command at all


# --- 141: the reader went away -----------------------------------------------------------------


def test_a_closed_pipe_ends_quietly_with_141() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "oodida", "completion", "bash"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before the process can write: every write meets a closed pipe
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err
    assert b"Traceback" not in err and b"Exception ignored" not in err


def test_head_on_a_long_output_from_a_shell() -> None:
    done = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m oodida --help | head -1; echo rc=${{PIPESTATUS[0]}}"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.stdout.startswith("usage: oodida") and "Traceback" not in done.stderr


# --- completion, checked by the shells ------------------------------------------------------------


def test_bash_completion_registers_and_completes_commands_flags_and_choices(tmp_path: Path) -> None:
    script = oodida("completion", "bash").stdout
    (tmp_path / "c.sh").write_text(script)
    probe = (
        f"source {tmp_path / 'c.sh'}; complete -p oodida; "
        "COMP_WORDS=(oodida sig); COMP_CWORD=1; _oodida; echo \"1:${COMPREPLY[*]}\"; "
        "COMP_WORDS=(oodida submit --wa); COMP_CWORD=2; _oodida; echo \"2:${COMPREPLY[*]}\"; "
        "COMP_WORDS=(oodida submit --window-kind ''); COMP_CWORD=3; _oodida; echo \"3:${COMPREPLY[*]}\"; "
        "COMP_WORDS=(oodida credentials ''); COMP_CWORD=2; _oodida; echo \"4:${COMPREPLY[*]}\"; "
        "COMP_WORDS=(oodida try x.py --veh); COMP_CWORD=3; _oodida; echo \"5:${COMPREPLY[*]}\""
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0] == "complete -o default -F _oodida oodida"
    assert out[1:] == ["1:signals", "2:--wait", "3:next latest first", "4:add list revoke", "5:--vehicles"]


def test_zsh_completion_loads_registers_and_completes(tmp_path: Path) -> None:
    if shutil.which("zsh") is None:
        if os.environ.get("OODIDA_REQUIRE_ZSH") == "1":
            pytest.fail("OODIDA_REQUIRE_ZSH=1 but zsh is not installed (apt-get install zsh)")
        pytest.skip("zsh is not installed (apt-get install zsh)")
    (tmp_path / "c.zsh").write_text(oodida("completion", "zsh").stdout)
    probe = (
        f"source {tmp_path / 'c.zsh'}; print -r -- ${{_comps[oodida]}}; "
        "COMP_WORDS=(oodida sig); COMP_CWORD=1; _oodida; print -r -- \"1:${COMPREPLY[*]}\"; "
        "COMP_WORDS=(oodida submit --wa); COMP_CWORD=2; _oodida; print -r -- \"2:${COMPREPLY[*]}\"; "
        "COMP_WORDS=(oodida submit --window-kind ''); COMP_CWORD=3; _oodida; print -r -- \"3:${COMPREPLY[*]}\"; "
        "COMP_WORDS=(oodida credentials ''); COMP_CWORD=2; _oodida; print -r -- \"4:${COMPREPLY[*]}\""
    )
    done = subprocess.run(["zsh", "-f", "-c", probe], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0] == "_bash_complete -o default -F _oodida"
    # zsh's compgen leaves filtering by the typed prefix to zsh's own matcher (compadd),
    # so the words offered for `sig` and `--wa` are the candidates, which must hold them
    assert "signals" in out[1].split(":", 1)[1].split() and "--wait" in out[2].split()
    assert out[3:] == ["3:next latest first", "4:add list revoke"]
