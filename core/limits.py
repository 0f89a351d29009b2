"""Process limits and settings a server holding a whole fleet needs.

Every vehicle is a connection and every connection a file descriptor: the usual soft
limit of 1,024 descriptors would refuse the 1,021st vehicle (accept fails with EMFILE)
while the hard limit, which an unprivileged process may raise its soft limit to, is
often far higher (systemd's default is 524,288).
"""

from __future__ import annotations

import gc
import resource


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns (soft, hard) now in
    force. Never lowers it, never fails: a limit it cannot raise stays as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# Young-generation size for a long-running service (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000


def tune_gc_for_service() -> None:
    """Fewer, larger young collections, and the start-up objects out of every collection.

    With 10,000 connections, each iteration's results (thousands of small dicts) live
    through many young collections at the default threshold and are promoted, which
    triggers full collections over every connection's objects: 18 of them, 4.5 s of CPU
    in a 10,000-vehicle benchmark run, a fifth of the server's CPU per iteration. At
    50,000 most of them die young and no full collection ran (bench/fleet_scale.py);
    the cost is a few more MB of not-yet-collected cycles. `gc.freeze()` leaves the
    modules' objects, alive for good anyway, out of the collections that remain."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
