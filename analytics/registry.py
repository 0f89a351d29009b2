"""The built-in methods by name, and the driver calls for a list of them.

An assignment may ask for several per-signal methods at once (one window, one
round trip, e.g. ["mean", "min", "max", "histogram"]); the partials then travel as
{method: partial} and the fleet results come back the same way. An iterative method
must be alone: its state ties the iterations together, and mixing it with others
would make a late or cancelled iteration ambiguous for them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from oodida.analytics.arrays import from_wire
from oodida.analytics.base import Method, MethodError
from oodida.analytics.histogram import Histogram
from oodida.analytics.kmeans import KMeans
from oodida.analytics.quantiles import Quantiles
from oodida.analytics.series import Window
from oodida.analytics.stats import Count, Last, Max, Mean, Min, Std, Variance

_METHODS: dict[str, Method] = {
    m.name: m
    for m in (Count(), Min(), Max(), Mean(), Variance(), Std(), Quantiles(), Histogram(), Last(), KMeans())
}


def method_names() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    try:
        return _METHODS[name]
    except (KeyError, TypeError):
        raise MethodError(f"unknown analytics method {name!r}; known methods: {', '.join(method_names())}") from None


def _methods(methods: Sequence[str]) -> list[Method]:
    if isinstance(methods, str) or not isinstance(methods, Sequence):
        raise MethodError(f"methods must be a list of method names, got {methods!r}")
    if not methods:
        raise MethodError(f"no method given; known methods: {', '.join(method_names())}")
    if len(set(methods)) != len(methods):
        raise MethodError(f"a method is named twice in {list(methods)}")
    resolved = [get_method(name) for name in methods]
    iterative = [m.name for m in resolved if m.iterative]
    if iterative and len(resolved) > 1:
        raise MethodError(
            f"{iterative[0]} is iterative and must be the only method of an assignment, got {list(methods)}"
        )
    return resolved


def check(methods: Sequence[str], params: Mapping[str, Any], signals: Sequence[str]) -> None:
    """Everything that can be known wrong before a vehicle is bothered: method names,
    their combination, the params (including keys no chosen method reads, which are
    typos) and the signals. Raises MethodError with the reason."""
    resolved = _methods(methods)
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise MethodError(f"params must be a map with string keys, got {params!r}")
    if isinstance(signals, str) or not isinstance(signals, Sequence) or not signals:
        raise MethodError(f"signals must be a non-empty list of signal names, got {signals!r}")
    if not all(isinstance(s, str) for s in signals) or len(set(signals)) != len(signals):
        raise MethodError(f"signals must be distinct names, got {list(signals)}")
    accepted = frozenset().union(*(m.param_names for m in resolved))
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise MethodError(
            f"params {unknown} are read by none of {list(methods)}; accepted: {sorted(accepted) or 'none'}"
        )
    for method in resolved:
        method.check_params(params, signals)


def run_on_board(
    methods: Sequence[str], window: Window, params: Mapping[str, Any], state: Mapping[str, Any] | None
) -> dict[str, Any]:
    """{method: partial}. `state` is {method: state} as the server last sent it."""
    state = from_wire(dict(state)) if state else {}
    return {m.name: m.on_board(window, params, state.get(m.name)) for m in _methods(methods)}


def run_off_board(
    methods: Sequence[str],
    partials: Mapping[str, Mapping[str, Any]],
    params: Mapping[str, Any],
    state: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """{vehicle: {method: partial}} -> ({method: fleet result}, {method: next state},
    the latter None when no method is iterative). Partials may still be in wire form."""
    resolved = _methods(methods)
    state = from_wire(dict(state)) if state else {}
    per_method: dict[str, dict[str, Any]] = {m.name: {} for m in resolved}
    for vehicle, results in partials.items():
        if not isinstance(results, Mapping):
            raise MethodError(f"results from vehicle {vehicle!r} must be a map of method -> partial")
        missing = [name for name in per_method if name not in results]
        if missing:
            raise MethodError(f"results from vehicle {vehicle!r} lack methods {missing}")
        for name in per_method:
            per_method[name][vehicle] = from_wire(results[name])
    fleet: dict[str, Any] = {}
    next_state: dict[str, Any] = {}
    for method in resolved:
        fleet[method.name], following = method.off_board(per_method[method.name], params, state.get(method.name))
        if method.iterative:
            next_state[method.name] = following
    return fleet, (next_state if next_state else None)


def summarizer(methods: Sequence[str]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """`summarize` with the methods resolved once, for partials already converted by
    `from_wire`: a report summarises every vehicle's partial, ten thousand of them."""
    resolved = _methods(methods)

    def summarize_one(partial: Mapping[str, Any]) -> dict[str, Any]:
        missing = [m.name for m in resolved if m.name not in partial]
        if missing:
            raise MethodError(f"partial lacks methods {missing}")
        return {m.name: m.summarize(partial[m.name]) for m in resolved}

    return summarize_one


def summarize(methods: Sequence[str], partial: Mapping[str, Any]) -> dict[str, Any]:
    """One vehicle's {method: partial} in the readable form of the fleet result."""
    resolved = _methods(methods)
    missing = [m.name for m in resolved if m.name not in partial]
    if missing:
        raise MethodError(f"partial lacks methods {missing}")
    return {m.name: m.summarize(from_wire(partial[m.name])) for m in resolved}
