"""What the analysts' tidy rows cost: one iteration report of a large fleet turned
into rows, a DataFrame, CSV and Parquet.

Run on demand, not as a test:

    .venv/bin/python bench/client_rows.py [--vehicles 2000] [--iterations 3] [--rounds 3]

The report is what the server sends for one iteration of `mean, min, max, count,
quantiles, histogram(16 bins)` over two signals. Rows, same run, same reports:

- report_json: the per-iteration JSON the CLI printed before (oodida/commands/render.py),
  one dict per report: the baseline, the least any export must do.
- shape: the public `--json` shape (times twice, no protocol fields).
- records: the tidy rows (oodida.client.records), pure Python.
- to_pandas, to_csv, to_parquet: the rows as a DataFrame and files.

Printed: the median time over the rounds, rows per second, and the ratio to the
baseline. The figure that matters: an analyst loading an assignment of a fleet this
size waits this long per iteration.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from typing import Any

from oodida.client.results import Results
from oodida.client.shape import shape
from oodida.commands.render import report_json
from oodida.wire.messages import IterationReport, VehicleReport

SIGNALS = ["SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE"]


def value(i: int) -> dict[str, Any]:
    per = {s: 30.0 + i % 50 + k for k, s in enumerate(SIGNALS)}
    return {
        "mean": per, "min": per, "max": per, "count": {s: 100 for s in SIGNALS},
        "quantiles": {s: {"0.1": 1.0, "0.5": 2.0, "0.9": 3.0} for s in SIGNALS},
        "histogram": {s: {"edges": [float(e) for e in range(17)], "counts": [6] * 16, "below": 0, "above": 4}
                      for s in SIGNALS},
    }


def reports(vehicles: int, iterations: int) -> list[IterationReport]:
    out = []
    for it in range(1, iterations + 1):
        answers = {
            f"car-{i}": VehicleReport(
                ok=True, code_hash="builtin:0.1", value=value(i), samples={s: 100 for s in SIGNALS},
                t_start=1e9 + it, t_end=1e9 + it + 5, units={SIGNALS[0]: "km/h", SIGNALS[1]: "deg"},
            )
            for i in range(vehicles)
        }
        out.append(IterationReport(id=1, assignment=1, iteration=it, iterations=iterations, status="complete",
                                   vehicles=answers, missing=[], started=1e9, closed=1e9 + 6, fleet=value(0),
                                   code_hash="builtin:0.1"))
    return out


def timed(fn: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=2000)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rs = reports(args.vehicles, args.iterations)
    n_rows = len(Results(1, rs).records())
    cases: dict[str, Callable[[], Any]] = {
        "report_json (baseline)": lambda: [report_json(r) for r in rs],
        "shape (--json)": lambda: [shape(r) for r in rs],
        "records": lambda: Results(1, rs).records(),
        "to_pandas": lambda: Results(1, rs).to_pandas(),
        "to_csv": lambda: Results(1, rs).to_csv(),
        "to_parquet": lambda: Results(1, rs).to_parquet(io.BytesIO()),
    }
    print(f"{args.vehicles} vehicles x {args.iterations} iterations: {n_rows} tidy rows; median of {args.rounds}")
    base = None
    for name, fn in cases.items():
        t = timed(fn, args.rounds)
        base = base or t
        print(f"  {name:<24} {t * 1000:9.1f} ms  {n_rows / t:12,.0f} rows/s  x{t / base:5.2f}")


if __name__ == "__main__":
    main()
