"""What every built-in analytics method is: a pair of hooks around one iteration.

As in Flower's strategies, a method never touches the transport. The agent calls
`on_board` on each vehicle's window and ships the *partial* it returns; the server
calls `off_board` on the partials that arrived and gets the *fleet result* plus the
state to hand to the vehicles with the next iteration. Partials are designed so that
the fleet result is exactly what the method would give over all vehicles' data put
together: the raw data never has to leave the vehicles for the answer to be right.

Partials carry whatever is needed to read them on their own (the `q` of quantiles,
the `ddof` of a variance, a histogram's edges), so `summarize` can show one vehicle's
answer without the assignment's parameters.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from oodida.analytics.series import Series, Window
from oodida.core.errors import OodidaError


class MethodError(OodidaError, ValueError):
    """Bad parameters or unusable data for an analytics method; the message says why."""


@runtime_checkable
class Method(Protocol):
    """The hooks the iteration loop drives; see the module docstring.

    `name`, `iterative` and `param_names` are read-only: the drivers only read them,
    and a method declares them once for all its instances (as class constants, which
    a protocol's plain attribute would refuse: it asks for a settable instance one).
    """

    @property
    def name(self) -> str: ...

    @property
    def iterative(self) -> bool: ...

    @property
    def param_names(self) -> frozenset[str]:
        """Parameter names this method reads. All methods of an assignment share one
        params mapping, so a key that no chosen method reads is a typo to report."""
        ...

    def check_params(self, params: Mapping[str, Any], signals: Sequence[str]) -> None: ...

    def on_board(self, window: Window, params: Mapping[str, Any], state: Any) -> Any: ...

    def off_board(self, partials: Mapping[str, Any], params: Mapping[str, Any], state: Any) -> tuple[Any, Any]: ...

    def summarize(self, partial: Any) -> Any: ...


@contextlib.contextmanager
def malformed(method: str, vehicle: str | None = None) -> Iterator[None]:
    """Turn a partial that does not have the shape we sent into a MethodError.

    Partials come over the network; a vehicle running other code (or a bug) must cost
    the iteration a clear error, never an anonymous KeyError in the server.
    """
    try:
        yield
    except MethodError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        who = f" from vehicle {vehicle!r}" if vehicle is not None else ""
        raise MethodError(f"{method}: malformed partial{who}: {type(exc).__name__}: {exc}") from exc


# --- parameter helpers: one place for the wording of every complaint ---------------


def int_param(method: str, params: Mapping[str, Any], key: str, default: int | None, minimum: int) -> int | None:
    """An integer parameter; bools and integral floats are refused so typos show."""
    value = params.get(key, default)
    if value is None:
        return None
    if type(value) is not int:
        raise MethodError(f"{method}: param {key!r} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise MethodError(f"{method}: param {key!r} must be at least {minimum}, got {value}")
    return value


def finite_float(method: str, key: str, value: Any) -> float:
    if type(value) not in (int, float):
        raise MethodError(f"{method}: param {key!r} needs numbers, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise MethodError(f"{method}: param {key!r} needs finite numbers, got {value!r}")
    return float(value)


def float_list(method: str, key: str, value: Any, *, min_len: int = 1) -> list[float]:
    if not isinstance(value, (list, tuple)):
        raise MethodError(f"{method}: param {key!r} must be a list of numbers, got {type(value).__name__}")
    if len(value) < min_len:
        raise MethodError(f"{method}: param {key!r} needs at least {min_len} number(s), got {len(value)}")
    return [finite_float(method, key, x) for x in value]


def signal_list(method: str, key: str, value: Any, signals: Sequence[str]) -> list[str]:
    if not isinstance(value, (list, tuple)) or not value or not all(type(s) is str for s in value):
        raise MethodError(f"{method}: param {key!r} must be a non-empty list of signal names, got {value!r}")
    if len(set(value)) != len(value):
        raise MethodError(f"{method}: param {key!r} names a signal twice: {value!r}")
    unknown = [s for s in value if s not in signals]
    if unknown:
        raise MethodError(f"{method}: param {key!r} names signals the assignment does not read: {unknown}")
    return list(value)


# --- per-signal methods ----------------------------------------------------------


class SignalwiseMethod:
    """Base of the methods that treat each signal on its own.

    Three hooks do the work: `partial_of` one signal's samples, `merge` the
    per-vehicle partials of one signal into a partial of the same form, and
    `readable` a partial; `settings` parses the params for a signal and `load` checks
    a partial that came over the network. The
    per-vehicle summary is then `readable(partial)` and the fleet result
    `readable(merge(partials))`, which keeps the two in the same form by construction.
    A signal one vehicle lacks counts as empty there.
    """

    name: ClassVar[str]
    iterative: ClassVar[bool] = False
    param_names: ClassVar[frozenset[str]] = frozenset()

    def check_params(self, params: Mapping[str, Any], signals: Sequence[str]) -> None:
        for signal in signals:
            self.settings(params, signal)

    def settings(self, params: Mapping[str, Any], signal: str) -> Any:
        """Parse and check the params for one signal (raise MethodError); the value
        is handed to `partial_of` and `merge`."""
        return None

    def partial_of(self, series: Series, settings: Any) -> Any:
        raise NotImplementedError

    def load(self, partial: Any) -> Any:
        """Check a partial that came over the network; return it in working form."""
        return partial

    def merge(self, partials: Sequence[Any], settings: Any) -> Any:
        raise NotImplementedError

    def readable(self, partial: Any) -> Any:
        raise NotImplementedError

    def on_board(self, window: Window, params: Mapping[str, Any], state: Any) -> dict[str, Any]:
        return {signal: self.partial_of(series, self.settings(params, signal)) for signal, series in window.items()}

    def off_board(
        self, partials: Mapping[str, Any], params: Mapping[str, Any], state: Any
    ) -> tuple[dict[str, Any], None]:
        by_signal: dict[str, list[Any]] = {}
        # Sorted by vehicle id: the fleet result must not depend on arrival order.
        for vehicle in sorted(partials):
            with malformed(self.name, vehicle):
                per_signal = partials[vehicle]
                if not isinstance(per_signal, Mapping):
                    raise TypeError(f"expected a map of signal -> partial, got {type(per_signal).__name__}")
                for signal, partial in per_signal.items():
                    by_signal.setdefault(signal, []).append(self.load(partial))
        fleet = {}
        for signal, parts in by_signal.items():
            merged = self.merge(parts, self.settings(params, signal))
            fleet[signal] = self.readable(merged)
        return fleet, None

    def summarize(self, partial: Any) -> dict[str, Any]:
        with malformed(self.name):
            return {signal: self.readable(self.load(p)) for signal, p in partial.items()}
