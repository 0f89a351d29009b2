"""Reading a recorded CAN log that may be damaged: every frame that can be read, and
an account of what could not.

python-can's readers stop at the first line they cannot parse, with a bare
"too many values to unpack" and no line number; a log cut off by a power loss, or
one line mangled by a merge, would then lose the whole drive. Text logs (candump
.log, .asc, .csv, .trc, plain or gzipped) are fed to python-can's own reader through
a line counter: when the reader fails, that line is recorded (file:line and the
reason) and the reader starts afresh on the header and the lines after it. Binary
logs (.blf, .mf4, .db) are read up to the first frame that cannot be, as a file
written up to a power cut holds its frames up to the cut.

Only a file with nothing readable is refused. `.asc` files give times relative to
the measurement's start, which their header dates: they are read in absolute time
from that date where the header has one (as every other format is), and the
result says which.
"""

from __future__ import annotations

import gzip
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import can
from can.io.generic import TextIOMessageReader

from oodida.hw.errors import SourceError

# Unreadable lines kept with their reason; past this they are only counted.
MAX_REPORTED = 20

ABSOLUTE = "absolute"
RELATIVE = "relative to the start of the measurement (the header gives no start time)"


@dataclass
class LogContents:
    """What a log holds: its frames in file order, and what could not be read."""

    messages: list[can.Message]
    unreadable: int = 0  # lines (text logs) or trailing parts (binary logs) skipped
    problems: list[str] = field(default_factory=list)  # "file:line: reason", the first MAX_REPORTED
    time_base: str = ABSOLUTE


class _Lines:
    """A text file as python-can's readers take it: the header's lines, then the
    file's from `start` on, counting the lines handed out, since when a reader raises,
    the last line given to it is the one it could not read."""

    def __init__(self, lines: list[str], header: list[int], start: int) -> None:
        self._lines = lines
        self._header = header
        self._start = start
        self.given = 0  # lines handed out so far

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        given, header = self.given, self._header
        index = header[given] if given < len(header) else self._start + given - len(header)
        if index >= len(self._lines):
            raise StopIteration
        self.given = given + 1
        return self._lines[index]

    def readline(self) -> str:
        try:
            return next(self)
        except StopIteration:
            return ""

    def index(self, given: int) -> int:
        """The file's line index (0-based) of the `given`-th line handed out (1-based)."""
        if given <= len(self._header):
            return self._header[given - 1]
        return self._start + given - 1 - len(self._header)

    def close(self) -> None:
        pass


def _reader_class(path: str) -> tuple[type[can.io.generic.MessageReader], bool]:
    """python-can's reader for the file's suffix, and whether the file is gzipped."""
    suffixes = [s.lower() for s in pathlib.PurePath(path).suffixes]
    zipped = bool(suffixes) and suffixes[-1] == ".gz"
    suffix = suffixes[-2] if zipped and len(suffixes) >= 2 else (suffixes[-1] if suffixes else "")
    try:
        return can.io.player.MESSAGE_READERS[suffix], zipped
    except KeyError:
        known = ", ".join(sorted(can.io.player.MESSAGE_READERS))
        raise SourceError(
            f"cannot read CAN log {path}: unknown format {suffix or '(no suffix)'!r}; known: {known}"
        ) from None


def read_log(path: str) -> LogContents:
    """Every readable frame of the log at `path`; a SourceError if there is none."""
    reader_class, zipped = _reader_class(path)
    try:
        if issubclass(reader_class, TextIOMessageReader):
            contents = _read_text(path, reader_class, zipped)
        else:
            contents = _read_binary(path, reader_class, zipped)
    except OSError as exc:
        raise SourceError(f"cannot read CAN log {path}: {exc.strerror or exc}") from exc
    if not contents.messages:
        why = f"; {contents.unreadable} unreadable ({'; '.join(contents.problems[:3])})" if contents.unreadable else ""
        raise SourceError(f"CAN log {path} holds no readable frames{why}")
    return contents


def _open_text(path: str, zipped: bool) -> TextIO:
    # Latin-1 reads any byte: a stray non-UTF-8 byte is one bad line, not a bad file.
    if zipped:
        return gzip.open(path, mode="rt", encoding="latin-1", newline=None)
    return open(path, encoding="latin-1", newline=None)


def _read_text(path: str, reader_class: type, zipped: bool) -> LogContents:
    with _open_text(path, zipped) as file:
        lines = file.readlines()
    options: dict[str, Any] = {"relative_timestamp": False} if reader_class is can.ASCReader else {}
    contents = LogContents(messages=[])
    header: list[int] | None = None  # the lines before the first frame, given again on a restart
    start = 0
    dated = False
    while True:
        source = _Lines(lines, header or [], start)
        reader = reader_class(source, **options)
        try:
            for message in reader:
                if header is None:
                    # What was read before the first frame is the header (an .asc's date
                    # and base, a .csv's column names, a .trc's ;$ lines).
                    header = [source.index(k) for k in range(1, source.given)]
                contents.messages.append(message)
            failed = None
        except Exception as exc:  # python-can raises ValueError, IndexError and more on a bad line
            failed = exc
        # An .asc's start time comes from its header (date, or the trigger block).
        dated = dated or bool(getattr(reader, "start_time", 0.0)) and reader_class is can.ASCReader
        if failed is None:
            break
        if source.given == 0:
            raise SourceError(f"cannot read CAN log {path}: {failed}") from failed
        bad = source.index(source.given)
        contents.unreadable += 1
        if len(contents.problems) < MAX_REPORTED:
            contents.problems.append(f"{path}:{bad + 1}: {type(failed).__name__}: {failed}")
        if header is None:  # before any frame: the lines before the bad one are the header
            header = [source.index(k) for k in range(1, source.given)]
        start = bad + 1
        if start >= len(lines):
            break
    if reader_class is can.ASCReader and not dated:
        contents.time_base = RELATIVE
    return contents


def _read_binary(path: str, reader_class: type, zipped: bool) -> LogContents:
    contents = LogContents(messages=[])
    file: Any = gzip.open(path, mode="rb") if zipped else path
    try:
        with reader_class(file) as reader:
            for message in reader:
                contents.messages.append(message)
    except Exception as exc:
        # A binary log cannot be resynchronised after a bad block: keep what came before.
        if not contents.messages:
            raise SourceError(f"cannot read CAN log {path}: {type(exc).__name__}: {exc}") from exc
        contents.unreadable += 1
        contents.problems.append(
            f"{path}: after frame {len(contents.messages)}: {type(exc).__name__}: {exc} (the rest is skipped)"
        )
    return contents


__all__ = ["ABSOLUTE", "MAX_REPORTED", "RELATIVE", "LogContents", "read_log"]
