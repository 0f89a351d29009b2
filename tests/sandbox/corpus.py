"""The hostile-module corpus: each file says what must happen to it.

Every file in `hostile/` is a real module that starts with a header:

    # expect: STAGE [RULE]     STAGE: compile | runtime | killed | ok
    # entry: on_board          which entry point to call (on_board, off_board, migrate)
    # deploy: refused RULE      optional: submit and deploy refuse it already (a return
                                that can never be sent, a facade call refused whatever
                                the values: known from the text; sandbox/static_refusals.py)
    # why: what it tries

- compile: `check_source` (and so `load`) refuses it; RULE is among its problems;
- runtime: it loads, and calling the entry ends in a Violation with RULE;
- killed:  only the real worker can show it: the supervisor kills the worker and
           reports RULE (timeout, memory, crash);
- ok:      it loads and runs; the corpus uses it to show that an attack did NOT
           work (a print flood that stays bounded, a poisoned facade that is clean
           in the next module).

RULE is a `Rule` value as analysts see it ("forbidden import", "timeout", ...).
`tests/sandbox/test_policy.py` runs the compile and runtime stages in-process;
the worker tests run all of it in the real sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from oodida.sandbox.errors import Rule
from oodida.sandbox.policy import ENTRY_POINTS

HOSTILE = Path(__file__).parent / "hostile"
Stage = Literal["compile", "runtime", "killed", "ok"]
STAGES: tuple[str, ...] = ("compile", "runtime", "killed", "ok")


@dataclass(frozen=True)
class CorpusModule:
    path: Path
    source: str
    expect_stage: Stage
    expect_rule: Rule | None  # None only for "ok"
    entry: str
    why: str
    deploy_rule: Rule | None = None  # refused at submit/deploy with this rule (check_source(returns=True))

    @property
    def id(self) -> str:
        return self.path.stem

    # The names the first corpus used (tests/sandbox/test_hostile.py reads them).
    @property
    def stage(self) -> str:
        return self.expect_stage

    @property
    def rule(self) -> Rule | None:
        return self.expect_rule


def _header(path: Path, source: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in source.splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line.lstrip("# ").partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    for key in ("expect", "entry", "why"):
        if not fields.get(key):
            raise ValueError(f"{path.name}: the header has no '# {key}: ...' line")
    return fields


def parse(path: Path) -> CorpusModule:
    source = path.read_text()
    fields = _header(path, source)
    stage, _, rule_text = fields["expect"].partition(" ")
    if stage not in STAGES:
        raise ValueError(f"{path.name}: unknown stage {stage!r} (one of {', '.join(STAGES)})")
    rule = Rule(rule_text) if rule_text else None
    if (rule is None) != (stage == "ok"):
        raise ValueError(f"{path.name}: {stage!r} needs {'no' if stage == 'ok' else 'a'} rule")
    if fields["entry"] not in ENTRY_POINTS:
        raise ValueError(f"{path.name}: unknown entry {fields['entry']!r}")
    deploy = fields.get("deploy", "")
    verdict, _, deploy_rule = deploy.partition(" ")
    if deploy and (verdict != "refused" or not deploy_rule):
        raise ValueError(f"{path.name}: '# deploy: refused RULE', not {deploy!r}")
    return CorpusModule(path, source, stage, rule, fields["entry"], fields["why"],  # type: ignore[arg-type]
                        Rule(deploy_rule) if deploy_rule else None)


def load_corpus() -> list[CorpusModule]:
    """Every module of the corpus, in file-name order (the order matters once:
    073_poison_check runs after the modules that try to poison what it uses)."""
    return [parse(path) for path in sorted(HOSTILE.glob("*.py"))]
