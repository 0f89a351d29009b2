"""Frame sources, and the one factory that builds them from configuration.

The agent's config names a source kind and its options; `open_source` turns that
into a source, refusing unknown kinds and unknown or missing options by name rather
than passing them through to where a typo would be silently ignored.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from oodida.hw.bus import BusSource
from oodida.hw.replay import LogReplay
from oodida.hw.source import FrameSource

__all__ = ["SOURCE_KINDS", "BusSource", "FrameSource", "LogReplay", "open_source"]

SOURCE_KINDS: dict[str, type[FrameSource]] = {"bus": BusSource, "log": LogReplay}


def open_source(kind: str, **options: Any) -> FrameSource:
    """A source of the given kind ("log" or "bus") built from explicit options."""
    try:
        factory = SOURCE_KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown source kind {kind!r}; allowed: {', '.join(sorted(SOURCE_KINDS))}"
        ) from None
    parameters = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, parameters, n=1)
            hints.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
        raise ValueError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(hints)} for source "
            f"kind {kind!r}; allowed: {', '.join(parameters)}"
        )
    missing = [
        name
        for name, parameter in parameters.items()
        if parameter.default is inspect.Parameter.empty and name not in options
    ]
    if missing:
        raise ValueError(f"source kind {kind!r} needs option(s) {', '.join(missing)}")
    return factory(**options)
