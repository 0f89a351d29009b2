"""Values as they arrive in reports, made plain for tables and JSON.

The client may import `wire` but not `analytics` (which holds the methods and their
numpy); arrays arrive as `wire.values.NDArray` and become lists here, non-finite
floats their JSON-safe spelling ("nan", "inf"), as `oodida results --json` writes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from oodida.wire.values import NDArray

# the built-in methods' names (analytics.registry.method_names(); a test keeps them equal)
BUILTIN_METHODS = frozenset(
    {"count", "histogram", "kmeans", "last", "max", "mean", "min", "quantiles", "std", "variance"}
)


def plain(value: Any) -> Any:
    if type(value) is NDArray:
        value = np.frombuffer(value.data, dtype=np.dtype(value.dtype)).reshape(value.shape).tolist()
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
