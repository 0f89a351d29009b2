"""The server raises its open-files limit to the hard limit: a connection each."""

from __future__ import annotations

import resource
import subprocess
import sys


def test_the_soft_limit_is_raised_to_the_hard_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(256, hard)
    code = (
        "import resource; from oodida.core.limits import raise_nofile_limit; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({lowered}, {hard})); "
        "print(*raise_nofile_limit()); print(*resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    expected = f"{hard} {hard}" if hard != resource.RLIM_INFINITY else None
    if expected is not None:
        assert out[0] == expected and out[1] == expected


def test_the_service_gc_has_a_large_young_generation_and_start_up_objects_frozen():
    code = (
        "import gc; from oodida.core.limits import GC_YOUNG_THRESHOLD, tune_gc_for_service; "
        "before = gc.get_threshold(); tune_gc_for_service(); after = gc.get_threshold(); "
        "print(after[0] == GC_YOUNG_THRESHOLD, after[1:] == before[1:], gc.get_freeze_count() > 1000)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "True"]
