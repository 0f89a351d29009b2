"""A one-line progress report while an assignment runs, where someone watches.

"iteration 2 of 4: 3 of 5 answered, 12 s to the deadline" on a terminal (rewritten
in place on stderr) or in a Jupyter notebook (an output that updates); nothing at
all when the output goes to a pipe or a file, so scripts get only what they asked.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from oodida.wire.messages import AssignmentInfo, IterationReport


def in_notebook() -> bool:
    """Running in a Jupyter kernel (IPython's ZMQ shell)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except Exception:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def progress_text(info: AssignmentInfo) -> str:
    total = info.iterations or "∞"
    if info.state != "running":
        return f"assignment {info.assignment}: {info.state}, {info.completed} of {total} iterations"
    if info.open is None:
        return f"assignment {info.assignment}: iteration {info.completed + 1} of {total}: starting"
    o = info.open
    return (f"iteration {o.iteration} of {total}: {o.answered} of {o.asked} answered,"
            f" {o.deadline_in:.0f} s to the deadline")


class Progress:
    """Inactive unless there is a terminal or a notebook to show it in."""

    def __init__(self, stream: TextIO | None = None, notebook: bool = False) -> None:
        self.stream = stream
        self.notebook = notebook
        self._handle: Any = None
        self.last = ""

    @classmethod
    def create(cls, wanted: bool | None, stream: TextIO | None = None) -> Progress:
        stream = stream if stream is not None else sys.stderr
        if wanted is False:
            return cls()
        if in_notebook():
            return cls(notebook=True)
        if stream is not None and hasattr(stream, "isatty") and stream.isatty():
            return cls(stream)
        return cls()

    @property
    def active(self) -> bool:
        return self.stream is not None or self.notebook

    def show(self, text: str) -> None:
        if text == self.last or not self.active:
            return
        self.last = text
        if self.notebook:
            from IPython.display import display

            if self._handle is None:
                # IPython's display() has no annotations
                self._handle = display({"text/plain": text}, raw=True, display_id=True)  # type: ignore[no-untyped-call]
            else:
                self._handle.update({"text/plain": text}, raw=True)
        elif self.stream is not None:
            self.stream.write("\r\x1b[K" + text)
            self.stream.flush()

    def update(self, info: AssignmentInfo) -> None:
        self.show(progress_text(info))

    def closed(self, report: IterationReport) -> None:
        total = report.iterations or "∞"
        answered = sum(1 for r in report.vehicles.values() if r.ok)
        asked = answered + len(report.missing) + sum(1 for r in report.vehicles.values() if not r.ok)
        self.show(f"iteration {report.iteration} of {total}: {report.status}, {answered} of {asked} answered")

    def clear(self) -> None:
        """Take the line off the terminal (before other output); the next update redraws it."""
        if self.stream is not None and self.last:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.last = ""

    def finish(self, state: str | None) -> None:
        if self.stream is not None and self.last:
            self.stream.write("\n")
            self.stream.flush()
