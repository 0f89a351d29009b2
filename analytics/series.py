"""The data a method sees: for each signal, the samples that fell inside the window.

Timestamps are signal time (when the bus said the value was true), not arrival time,
so that methods that align signals (k-means builds points from several signals) can
trust them. Both arrays are float64 whatever the decoder produced, so every method
computes in one precision and a vehicle's partial does not depend on its DBC's
integer or float encoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Series:
    """One signal's samples inside a window, timestamps ascending."""

    t: np.ndarray
    v: np.ndarray

    def __post_init__(self) -> None:
        t = np.asarray(self.t, dtype=np.float64)
        v = np.asarray(self.v, dtype=np.float64)
        if t.ndim != 1 or v.ndim != 1:
            raise ValueError(f"a series needs 1-D t and v, got shapes {t.shape} and {v.shape}")
        if t.shape != v.shape:
            raise ValueError(f"a series needs as many timestamps as values, got {t.size} and {v.size}")
        # Methods that align signals use binary search on t; a shuffled window
        # would give wrong points without any error, so refuse it here.
        if t.size > 1 and bool(np.any(t[1:] < t[:-1])):
            raise ValueError("series timestamps must be ascending")
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "v", v)

    def __len__(self) -> int:
        return int(self.v.size)

    @classmethod
    def empty(cls) -> Series:
        """A signal that produced no sample in the window (a quiet bus, a late start)."""
        return cls(np.empty(0), np.empty(0))


Window = Mapping[str, Series]
"""Signal name -> samples. Every signal of the assignment is present, possibly empty."""
