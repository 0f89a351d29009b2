"""Which signals a multiplexed message carries in a given frame, as cantools decides it.

Both decode paths (per frame, `hw.dbc`, and in batches, `hw.batch`) take the rules
from here, so they cannot disagree, and the rules are cantools' own, read from the
same `Signal` attributes its codec tree is built from:

- a signal is in a frame when every multiplexer above it (`multiplexer_signal`,
  nested through SG_MUL_VAL_) has one of the values in its `multiplexer_ids`;
- a multiplexer that is itself in the frame must have a value the DBC defines: one
  that selects some signal, or one named in its value table (VAL_ without a signal
  under it, the pattern of Tesla's switch states); any other value makes the whole
  frame malformed, as cantools raises on it;
- a multiplexer's value is its decoded value as an integer (cantools' `int(value)`).

One deliberate difference: a signal that SG_MUL_VAL_ names as the multiplexer of
others but that is marked `m` rather than `M` (vw_pq.dbc's Motor_2) is taken as the
multiplexer it is said to be. cantools then never decodes the signals under it, and
a decoder that ignored the tie would give them on every frame, whatever the
selector says; here they come where the selector selects them.
"""

from __future__ import annotations

from dataclasses import dataclass

from cantools.database.can import Message, Signal

# (multiplexer name, the values of it that select) for each multiplexer above a signal,
# nearest first.
Chain = tuple[tuple[str, frozenset[int]], ...]


@dataclass(frozen=True, slots=True)
class Selector:
    """One multiplexer of a message."""

    signal: Signal
    keys: frozenset[int]  # the values the DBC defines; empty: any value goes (cantools checks none)
    chain: Chain | None  # the multiplexers above it; None: never in a frame


@dataclass(frozen=True, slots=True)
class Layout:
    """The multiplexers of one message, parents before children."""

    selectors: tuple[Selector, ...]
    unmarked: tuple[str, ...] = ()  # selectors named by SG_MUL_VAL_ but not marked `M`


def layout(message: Message) -> Layout | None:
    """The message's multiplexers, or None when no signal of it is multiplexed."""
    if not any(s.is_multiplexer or s.multiplexer_signal is not None for s in message.signals):
        return None
    by_name = {s.name: s for s in message.signals}
    named = _named(message)
    selectors = []
    for signal in message.signals:
        if not (signal.is_multiplexer or signal.name in named):
            continue
        keys: set[int] = set()
        for child in message.signals:
            if child.multiplexer_signal == signal.name and child.multiplexer_ids is not None:
                keys.update(child.multiplexer_ids)
        if signal.conversion.choices:
            keys.update(int(k) for k in signal.conversion.choices)
        selectors.append(Selector(signal, frozenset(keys), _chain(signal, by_name)))
    # Parents first, so one pass over the selectors sees a parent's value before its children.
    selectors.sort(key=lambda s: len(s.chain) if s.chain is not None else -1)
    unmarked = tuple(s.signal.name for s in selectors if not s.signal.is_multiplexer)
    return Layout(tuple(selectors), unmarked)


def _named(message: Message) -> set[str]:
    """Names of signals some other signal of the message hangs from."""
    return {s.multiplexer_signal for s in message.signals if s.multiplexer_signal is not None}


def chain_of(message: Message, signal: Signal) -> Chain | None:
    """`Layout.chain` without building a layout."""
    return _chain(signal, {s.name: s for s in message.signals})


def _chain(signal: Signal, by_name: dict[str, Signal]) -> Chain | None:
    links = []
    seen = {signal.name}
    current = signal
    while current.multiplexer_signal is not None:
        parent = by_name.get(current.multiplexer_signal)
        if parent is None or parent.name in seen:
            return None  # no such multiplexer, or a loop: in no frame
        links.append((parent.name, frozenset(current.multiplexer_ids or ())))
        seen.add(parent.name)
        current = parent
    return tuple(links)


__all__ = ["Chain", "Layout", "Selector", "chain_of", "layout"]
