"""How many inputs each fuzz test tried, and what it found.

A fuzz test that passes says little without its count: each test adds its figures to
a `Tally`, which prints them and appends one JSON line to the report file, pytest's
`--fuzz-report PATH` (default: `fuzz-report.jsonl` in the test's tmp dir). The
campaign script reads the same lines to print its totals.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Tally:
    test: str
    path: Path
    counts: Counter[str] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, what: str, n: int = 1) -> None:
        self.counts[what] += n

    def found(self, what: str) -> None:
        """Something the target should not have done; the test fails on it too."""
        self.findings.append(what)

    @property
    def inputs(self) -> int:
        return self.counts["inputs"]

    def line(self) -> dict[str, object]:
        return {
            "test": self.test,
            "seconds": round(time.monotonic() - self.started, 2),
            **dict(sorted(self.counts.items())),
            "findings": self.findings,
        }

    def write(self) -> dict[str, object]:
        line = self.line()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as out:
            out.write(json.dumps(line) + "\n")
        print(f"\nfuzz {self.test}: " + ", ".join(f"{k}={v}" for k, v in line.items() if k != "test"))
        return line


def totals(path: Path) -> dict[str, object]:
    """Sum the lines of a report file: inputs and every other count, all findings."""
    counts: Counter[str] = Counter()
    findings: list[str] = []
    tests = 0
    for raw in path.read_text().splitlines():
        line = json.loads(raw)
        tests += 1
        findings += [f"{line['test']}: {f}" for f in line.pop("findings")]
        line.pop("test")
        for key, value in line.items():
            if isinstance(value, (int, float)):
                counts[key] += value
    return {"tests": tests, **dict(sorted(counts.items())), "findings": findings}
