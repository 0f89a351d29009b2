"""What checking signatures costs an agent: loading module versions with and without
`[signing] require = true`, against the same real sandbox worker, in the same run.

Run on demand, not as a test:

    .venv/bin/python bench/module_signing.py [--versions 200]

Each round loads a fresh module version (its text changes every time, so the worker
really compiles and loads each one) through `agent.versions.ModuleVersions`, as a
`LoadModule` from the server would: once with no signing policy (the baseline), once
signed by the analyst's key with an agent that requires it (hash, key lookup,
ed25519 verification, then the same load). The two kinds alternate so drift of the
machine's load hits both alike. Printed: the median and 90th percentile of each, the
difference and the ratio; and the bare sign and verify times of the primitives.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oodida.agent.modules import ModuleRunner
from oodida.agent.versions import ModuleVersions
from oodida.core.signing import (
    Trust,
    content_hash,
    generate_key,
    load_signing_key,
    signed_message,
)
from oodida.wire.messages import LoadModule, ModuleSource

SOURCE = """
import math

VERSION = {n}

def on_board(window, params, state):
    speed = window['SPEED']
    total = 0.0
    for v in speed.v:
        total += v
    return {{'version': VERSION, 'mean': total / max(len(speed.v), 1), 'pi': math.pi}}
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def measure(versions: int, key_dir: Path) -> None:
    generate_key(key_dir / "alice")
    key = load_signing_key(key_dir / "alice")
    runner = ModuleRunner()
    plain = ModuleVersions(runner)
    strict = ModuleVersions(runner, Trust.from_files([key_dir / "alice.pub"], require=True))
    times: dict[str, list[float]] = {"unsigned, no policy": [], "signed, require": []}
    try:
        await plain.load(LoadModule(assignment=1, code_hash=content_hash(SOURCE.format(n=-1)),
                                    module=ModuleSource(name="warm.py", source=SOURCE.format(n=-1))))
        for i in range(versions):
            for kind, versions_of in (("unsigned, no policy", plain), ("signed, require", strict)):
                n = 2 * i + (kind == "signed, require")
                module = ModuleSource(name=f"v{n}.py", source=SOURCE.format(n=n))
                if kind == "signed, require":
                    module = key.sign(module, "on_board")
                message = LoadModule(assignment=1, code_hash=content_hash(module.source), module=module)
                started = time.perf_counter()
                ack = await versions_of.load(message)
                times[kind].append(time.perf_counter() - started)
                assert ack.ok, ack.error
    finally:
        await runner.close()

    print(f"{versions} module versions of each kind, loaded into one real sandbox worker, alternating\n")
    for kind, values in times.items():
        print(f"  {kind:<22} median {statistics.median(values) * 1e3:7.3f} ms   "
              f"p90 {percentile(values, 0.9) * 1e3:7.3f} ms")
    base, signed = (statistics.median(v) for v in times.values())
    print(f"\n  signed / unsigned (medians): {signed / base:.3f}  (+{(signed - base) * 1e6:.0f} us per version)")

    message = signed_message("on_board", content_hash(SOURCE))
    public = key.private.public_key()
    rounds = 2000
    started = time.perf_counter()
    for _ in range(rounds):
        signature = key.private.sign(message)
    sign = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    for _ in range(rounds):
        public.verify(signature, message)
    verify = (time.perf_counter() - started) / rounds
    print(f"  ed25519 alone: sign {sign * 1e6:.0f} us, verify {verify * 1e6:.0f} us ({rounds} rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(measure(args.versions, Path(tmp)))


if __name__ == "__main__":
    main()
