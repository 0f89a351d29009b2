"""Output that survives the terminal it lands on.

Two ways a correct command used to end in a traceback: a terminal that cannot encode
the tables' dashes, ellipses and histogram bars (`LANG=C`, `PYTHONIOENCODING=ascii`,
an old Windows console), and a reader that stops reading (`oodida status | head -1`).
The first gets ASCII stand-ins for the few characters we print (`—` as `-`, the bars
as digits-free ASCII ramps), anything else as `?`; the second ends the command quietly
with 141, as a shell reports a process killed by SIGPIPE.
"""

from __future__ import annotations

import codecs
import os
import sys

ERRORS = "oodida-ascii"

_STAND_INS = {
    "—": "-", "–": "-", "…": "...", "·": ".", "≤": "<=", "≥": ">=", "×": "x", "→": "->", "─": "-",
    "‘": "'", "’": "'", "“": '"', "”": '"', "±": "+/-", "µ": "u", "°": "deg",
    " ": " ", "▁": "_", "▂": ".", "▃": ":", "▄": "-", "▅": "=", "▆": "+", "▇": "*", "█": "#",
}


def _stand_in(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start : error.end]
    return "".join(_STAND_INS.get(c, "?") for c in text), error.end


codecs.register_error(ERRORS, _stand_in)


def prepare_streams() -> None:
    """Give stdout and stderr the stand-ins where their encoding is not a Unicode one."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding.startswith("utf") or not hasattr(stream, "reconfigure"):
            continue
        try:
            stream.reconfigure(errors=ERRORS)
        except (ValueError, OSError):  # a closed or detached stream: nothing to print to anyway
            pass


def silence_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the interpreter's last flush
    at exit does not raise BrokenPipeError again (the Python docs' recipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
