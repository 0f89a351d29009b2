"""A longer fuzz campaign than CI runs, with totals.

    python -m tests.fuzz.campaign --minutes 10 [--seed N] [--report PATH]

Runs the fuzz tests (tests/fuzz) with every hypothesis property given more examples
and the mutation fuzzer against the real server given most of the time: the minutes
are split between a pytest run of the decoder properties (scaled up) and the session
fuzzer. Prints the totals of the report (inputs tried, by kind, and any findings) and
exits non-zero on a finding.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fuzz.report import totals

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--report", type=Path, default=None, help="JSON lines file (default: a temporary one)")
    args = parser.parse_args()
    report = args.report or Path(tempfile.mkdtemp(prefix="oodida-fuzz-")) / "fuzz-report.jsonl"
    budget = args.minutes * 60
    # the session fuzzer gets 70% of the time (its test runs 12 s at scale 1); the
    # hypothesis properties get the rest (about 12 s of examples at scale 1)
    session_scale = max(1.0, 0.7 * budget / 12.0)
    decoder_scale = max(1.0, 0.3 * budget / 12.0)
    started = time.monotonic()
    codes = []
    for tests, scale in (("tests/fuzz/test_decoder.py", decoder_scale), ("tests/fuzz/test_sessions.py", session_scale)):
        env = {**os.environ, "OODIDA_FUZZ_SCALE": f"{scale:.1f}", "OODIDA_FUZZ_SEED": str(args.seed)}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests,
                   f"--fuzz-report={report}", "-o", "timeout=0"]
        print(f"$ OODIDA_FUZZ_SCALE={scale:.1f} OODIDA_FUZZ_SEED={args.seed} {' '.join(command[1:])}", flush=True)
        codes.append(subprocess.run(command, cwd=REPO, env=env, check=False).returncode)
    result = totals(report)
    print(f"\ncampaign: {time.monotonic() - started:.0f} s, seed {args.seed}, report {report}")
    for key, value in result.items():
        if key != "findings":
            print(f"  {key}: {value}")
    findings = result["findings"]
    assert isinstance(findings, list)
    print(f"  findings: {len(findings)}")
    for finding in findings:
        print(f"    {finding}")
    return 1 if findings or any(codes) else 0


if __name__ == "__main__":
    sys.exit(main())
