"""One JSON shape for every answer, whichever command or method produced it.

Scripts parse `oodida … --json`; they should not have to know the protocol. So no
protocol fields (`type`, request `id`), and every time both as epoch seconds (for
arithmetic) and as ISO 8601 in UTC (for people and for tools that parse dates):
`"closed": 1733284000.5, "closed_iso": "2024-12-04T03:46:40.500000Z"`.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import msgspec

from oodida.client.values import plain
from oodida.wire.messages import Message

# fields that hold an epoch time, wherever they appear
TIME_FIELDS = frozenset({
    "at", "created", "connected_at", "server_time", "started", "closed", "t_start", "t_end", "signal_time",
    "window_start", "window_end",
})


def iso(t: float | None) -> str | None:
    """Epoch seconds as ISO 8601 in UTC; None stays None."""
    if t is None or not isinstance(t, (int, float)) or not math.isfinite(t):
        return None
    try:
        return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None


def shape(obj: Any) -> Any:
    """A message, struct, dict or list as the public JSON shape."""
    if isinstance(obj, msgspec.Struct):
        out: dict[str, Any] = {}
        for name in obj.__struct_fields__:
            if name == "id" and isinstance(obj, Message):
                continue
            _put(out, name, getattr(obj, name))
        return out
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "type":
                continue
            _put(out, str(k), v)
        return out
    if isinstance(obj, (list, tuple)):
        return [shape(v) for v in obj]
    if hasattr(obj, "value") and isinstance(obj, str):  # StrEnum
        return str(obj)
    return plain(obj)


def _put(out: dict[str, Any], name: str, value: Any) -> None:
    if name in TIME_FIELDS and (value is None or isinstance(value, (int, float))) and not isinstance(value, bool):
        out[name] = value
        out[f"{name}_iso"] = iso(value)
        return
    if name in ("value", "fleet", "params", "state"):  # a method's or module's own value: not our fields
        out[name] = plain(value)
        return
    out[name] = shape(value)


def error_shape(command: str, reason: str, code: str = "error", **extra: Any) -> dict[str, Any]:
    """How a failure looks on stdout under `--json` (with a non-zero exit)."""
    return {"error": {"command": command, "code": code or "error", "reason": reason, **extra}}
