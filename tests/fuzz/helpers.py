"""What the tests in tests/fuzz share (moved out of conftest.py, so that test modules
import a helper module, not a conftest)."""

from __future__ import annotations

import os


def scale() -> float:
    """The campaign sets OODIDA_FUZZ_SCALE to run every test longer (1 in CI)."""
    return float(os.environ.get("OODIDA_FUZZ_SCALE", "1"))
