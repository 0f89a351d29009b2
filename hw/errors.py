"""Errors of the signal-source layer.

Two things go wrong here that callers handle differently: a name that is not in the
DBC (the analyst's or the config's fault, shown back to them with suggestions) and a
source or DBC that cannot be opened (the vehicle's or the operator's fault, logged and
retried or reported). Bad frames on the bus are not errors at all: they are counted,
because nothing a bus carries may stop the agent.
"""

from __future__ import annotations

from collections.abc import Sequence

from oodida.core.errors import OodidaError


class HwError(OodidaError):
    """Something about the vehicle's signal sources went wrong."""


class UnknownSignalError(HwError, KeyError):
    """A signal name the DBC does not define, or defines in more than one message.

    A KeyError so that code treating the decoder as a mapping of names can catch the
    usual exception; `candidates` lets a CLI offer the choices without parsing text.
    """

    def __init__(self, name: str, reason: str, candidates: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.name = name
        self.reason = reason
        self.candidates = tuple(candidates)

    def __str__(self) -> str:
        # KeyError.__str__ would quote the message as if it were the missing key.
        return self.reason


class DbcError(HwError):
    """The DBC file cannot be read or parsed, so no signal can be decoded."""


class SourceError(HwError):
    """A frame source cannot be opened or has failed: missing log, bad interface."""
