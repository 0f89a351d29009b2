"""An assignment's results as analysts use them: rows, a DataFrame, files, a figure.

`Results` holds the closed iterations' reports (as the server sent them) and turns
them into the tidy rows of `oodida.client.records`. pandas, pyarrow and matplotlib
are optional (`pip install 'oodida[analyst]'`): without them `records()` and
`to_csv()` work, and what needs them says which extra to install.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from oodida.client.records import COLUMNS, FLEET, tidy
from oodida.client.shape import shape
from oodida.core.errors import OodidaError
from oodida.wire.messages import IterationReport

if TYPE_CHECKING:  # pragma: no cover
    import pandas
    from matplotlib.figure import Figure

EXTRA = "pip install 'oodida[analyst]'"


class MissingExtra(OodidaError, ImportError):
    """A DataFrame, a Parquet file or a plot was asked for without the packages that make
    them; the message says what to install."""


def need(module: str, what: str) -> Any:
    """Import an optional package, or say which extra brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{what} needs {module.split('.')[0]}: {EXTRA}") from None


def frame(records: list[dict[str, Any]], columns: Iterable[str] | None = None) -> pandas.DataFrame:
    need("pandas", "a DataFrame")  # the extra to install, if it is missing
    import pandas as pd

    return pd.DataFrame.from_records(records, columns=list(columns) if columns is not None else None)


def _csv_cell(v: Any) -> Any:
    """Empty for None, floats exactly (repr round-trips), the rest as csv writes it."""
    if v is None:
        return ""
    if type(v) is float:
        return repr(v)
    return v


class Results:
    """The closed iterations of one assignment (all, or a selection of them)."""

    def __init__(self, assignment: int, reports: Iterable[IterationReport], state: str | None = None,
                 reason: str | None = None) -> None:
        self.assignment = assignment
        self.reports: list[IterationReport] = sorted(reports, key=lambda r: r.iteration)
        #: the assignment's state when these were read: running, done, cancelled, failed, interrupted
        self.state = state
        self.reason = reason
        self._rows: list[dict[str, Any]] | None = None

    def __repr__(self) -> str:
        return (f"<Results of assignment {self.assignment}: {len(self.reports)} iterations"
                + (f", {self.state}" if self.state else "") + ">")

    def __len__(self) -> int:
        return len(self.reports)

    def __iter__(self) -> Iterator[IterationReport]:
        return iter(self.reports)

    @property
    def iterations(self) -> list[int]:
        return [r.iteration for r in self.reports]

    @property
    def complete(self) -> bool:
        """Every iteration closed complete or at quorum (none partial, failed or cancelled)."""
        return all(r.status in ("complete", "quorum") for r in self.reports)

    def iteration(self, number: int) -> Results:
        """Only iteration `number` (empty if it has not closed)."""
        return Results(self.assignment, [r for r in self.reports if r.iteration == number], self.state, self.reason)

    # --- rows ------------------------------------------------------------------------

    def _selected(self, fleet_only: bool) -> list[dict[str, Any]]:
        """The rows, shared (not copied): for the exports, which only read them."""
        if self._rows is None:
            self._rows = tidy(self.reports)
        return [r for r in self._rows if r["scope"] == FLEET] if fleet_only else self._rows

    def records(self) -> list[dict[str, Any]]:
        """The tidy rows (`oodida.client.records.COLUMNS`), vehicles then the fleet, per
        iteration; yours to change (copies)."""
        return [dict(r) for r in self._selected(False)]

    def fleet_records(self) -> list[dict[str, Any]]:
        """The fleet's rows only, as records (no pandas needed)."""
        return [dict(r) for r in self._selected(True)]

    def to_pandas(self, *, fleet_only: bool = False) -> pandas.DataFrame:
        """The tidy rows as a DataFrame, one column per `COLUMNS` entry."""
        need("pandas", "a DataFrame")
        import pandas as pd

        rows = self._selected(fleet_only)
        df = pd.DataFrame({c: [r[c] for r in rows] for c in COLUMNS}, columns=list(COLUMNS))
        for column in ("iteration", "assignment"):
            df[column] = df[column].astype("int64")
        df["samples"] = df["samples"].astype("Int64")
        df["value"] = pd.to_numeric(df["value"], errors="coerce").astype("float64")
        for column in ("ok", "late", "set_aside"):
            df[column] = df[column].astype(bool)
        return df

    def fleet(self) -> pandas.DataFrame | list[dict[str, Any]]:
        """The fleet rows only: a DataFrame with pandas installed, else records."""
        try:
            return self.to_pandas(fleet_only=True)
        except MissingExtra:
            return self.fleet_records()

    # --- files -----------------------------------------------------------------------

    def to_csv(self, path: str | os.PathLike[str] | None = None, *, fleet_only: bool = False) -> str | None:
        """Write the tidy rows as CSV (to `path`, or return the text). Needs no pandas."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        cell = _csv_cell
        writer.writerows([cell(r[c]) for c in COLUMNS] for r in self._selected(fleet_only))
        if path is None:
            return out.getvalue()
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(out.getvalue())
        return None

    def to_parquet(self, path: str | os.PathLike[str] | io.BytesIO, *, fleet_only: bool = False) -> None:
        """Write the tidy rows as a Parquet file (needs the analyst extra)."""
        need("pyarrow", "a Parquet file")
        self.to_pandas(fleet_only=fleet_only).to_parquet(path, index=False)

    def to_json_lines(self, *, fleet_only: bool = False) -> str:
        """One JSON object per tidy row, the columns as in `to_pandas()`."""
        dumps = json.dumps
        return "".join([dumps(row) + "\n" for row in self._selected(fleet_only)])

    def reports_json(self) -> list[dict[str, Any]]:
        """The iteration reports in the public JSON shape (`oodida results --json`)."""
        return [shape(r) for r in self.reports]

    # --- figures ---------------------------------------------------------------------

    def plot(self, signal: str | None = None, method: str | None = None, **options: Any) -> Figure:
        """A matplotlib figure: per (signal, method), the fleet value over iterations with
        the vehicles' spread, histograms as bars, quantiles as bands, k-means centroids
        and how they moved. See `oodida.client.plots.plot_results`."""
        from oodida.client.plots import plot_results

        return plot_results(self, signal=signal, method=method, **options)
