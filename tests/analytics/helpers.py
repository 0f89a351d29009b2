"""Shared helpers: run a method list over a fleet the way agent and server would."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cbor2

from oodida.analytics import Series, from_wire, run_off_board, run_on_board, to_wire
from oodida.wire.values import NDArray

_NDARRAY_TAG = 55799_0  # private tag for this test's stand-in of the wire codec


def fleet_run(
    methods: Sequence[str],
    fleet: Mapping[str, Mapping[str, Series]],
    params: Mapping[str, Any],
    state: Mapping[str, Any] | None = None,
    *,
    via_wire: bool = False,
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    partials = {v: run_on_board(methods, window, params, state) for v, window in fleet.items()}
    sent = {v: cbor_roundtrip(p) for v, p in partials.items()} if via_wire else partials
    fleet_result, next_state = run_off_board(methods, sent, params, state)
    return fleet_result, next_state, partials


def cbor_roundtrip(value: Any) -> Any:
    """to_wire -> CBOR bytes -> from_wire, with NDArray as a tagged (dtype, shape, bytes)."""

    def default(encoder: Any, v: Any) -> None:
        if type(v) is NDArray:
            encoder.encode(cbor2.CBORTag(_NDARRAY_TAG, [v.dtype, list(v.shape), v.data]))
            return
        raise TypeError(type(v).__name__)

    def tag_hook(tag: Any, immutable: bool) -> Any:  # cbor2 6 calls it (tag, immutable)
        if tag.tag == _NDARRAY_TAG:
            dtype, shape, data = tag.value
            return NDArray(dtype, tuple(shape), data)
        return tag

    encoded = cbor2.dumps(to_wire(value), default=default)
    return from_wire(cbor2.loads(encoded, tag_hook=tag_hook))

