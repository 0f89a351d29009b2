"""Process limits a server holding a whole fleet needs.

Every vehicle is a connection and every connection a file descriptor: the usual soft
limit of 1,024 descriptors would refuse the 1,021st vehicle (accept fails with EMFILE)
while the hard limit, which an unprivileged process may raise its soft limit to, is
often far higher (systemd's default is 524,288).
"""

from __future__ import annotations

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
