"""Logging set-up for the command line, and only there (libraries never configure it).

Lines go to standard error, one per record, with the level first: journald keeps
them as they are and can filter by priority when the level is given as a `<N>`
prefix (sd-daemon(3)), which `--log-format journal` adds.
"""

from __future__ import annotations

import logging
import sys

from oodida.core.text import inert

_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class _InertFormatter(logging.Formatter):
    """One record, one line: control characters in the message (a module's error
    text, a key it returned, a vehicle's report) are written as escapes, so no text
    that passes through a log call can forge a record or drive the terminal. A
    traceback (exc_info) is ours and keeps its lines."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        safe = inert(message)
        if safe != message:
            record = logging.makeLogRecord(record.__dict__)  # a copy: other handlers see the record as it was
            record.msg, record.args = safe, None
        return super().format(record)


class _JournalFormatter(_InertFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelname, 6)}>{super().format(record)}"


def setup_logging(level: str = "info", *, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "journal":
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(_InertFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
