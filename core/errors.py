"""The one error root of the project.

Every package raises subclasses of `OodidaError` for failures that are the system's
business (a bad frame, a refused credential, a missing signal), so callers can catch
"anything oodida says went wrong" without catching programming errors. Bad arguments
still raise `ValueError`/`TypeError` (often through a subclass that is both).

This module sits in the tiny `oodida` package, which every other package may import:
`hw` may not import `wire`, yet both need the same root.
"""

from __future__ import annotations


class OodidaError(Exception):
    """Root of every error this project raises on purpose."""
