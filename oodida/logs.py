"""Logging set-up for the command line, and only there (libraries never configure it).

Lines go to standard error, one per record, with the level first: journald keeps
them as they are and can filter by priority when the level is given as a `<N>`
prefix (sd-daemon(3)), which `--log-format journal` adds.
"""

from __future__ import annotations

import logging
import sys

_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelname, 6)}>{super().format(record)}"


def setup_logging(level: str = "info", *, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "journal":
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
