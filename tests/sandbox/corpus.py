"""The hostile-module corpus: each file says what must happen to it.

Header lines: `# expect: STAGE [RULE]` (STAGE: compile | runtime | killed | ok) and
`# why: ...`. Tests run every module and assert exactly that outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import Rule

HOSTILE = Path(__file__).parent / "hostile"


@dataclass(frozen=True)
class CorpusModule:
    path: Path
    source: str
    stage: str
    rule: Rule | None
    why: str

    @property
    def id(self) -> str:
        return self.path.stem


def load_corpus() -> list[CorpusModule]:
    modules = []
    for path in sorted(HOSTILE.glob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        expect = lines[0].removeprefix("# expect: ").split(" ", 1)
        why = lines[1].removeprefix("# why: ")
        rule = Rule(expect[1]) if len(expect) > 1 else None
        modules.append(CorpusModule(path, source, expect[0], rule, why))
    return modules
