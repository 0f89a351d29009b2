"""The analysts' client against a real local fleet: every method, from a plain script
and from inside a running event loop (as in a notebook); what it returns equals what
the CLI prints, value for value; units and windows in every row."""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import subprocess
import sys
import textwrap

import cantools
import pytest

import oodida
from oodida.client import AsyncClient, RequestFailed, Results
from oodida.client.records import COLUMNS, same
from tests.client.helpers import KMEANS, METHODS, PARAMS, REPO, STEER, env_of
from tests.client.helpers import oodida as run_oodida
from tests.helpers import DBC

pytestmark = pytest.mark.integration

ITERATIONS = 4


@pytest.fixture(scope="module")
def done(fleet) -> Results:
    """A finished assignment of every built-in method over two signals."""
    with oodida.connect(fleet.analyst_credentials, server=f"127.0.0.1:{fleet.port}") as client:
        a = client.submit(signals=["SPEED", STEER], window="1s", iterations=ITERATIONS, on_board=METHODS,
                          params=PARAMS, deadline=20)
        results = a.wait(progress=False)
    assert results.state == "done" and results.iterations == list(range(1, ITERATIONS + 1))
    assert results.complete
    return results


@pytest.fixture(scope="module")
def kmeans_done(fleet) -> Results:
    with oodida.connect(fleet.analyst_credentials, server=f"127.0.0.1:{fleet.port}") as client:
        results = client.submit(signals=["SPEED", STEER], window="1s", iterations=ITERATIONS, on_board=["kmeans"],
                                params=KMEANS, deadline=20).wait(progress=False)
    assert results.state == "done"
    return results


def dbc_unit(name: str) -> str:
    db = cantools.database.load_file(str(DBC), strict=False)
    for message in db.messages:
        for signal in message.signals:
            if name in (signal.name, f"{message.name}.{signal.name}"):
                return signal.unit
    raise KeyError(name)


# --- rows: units, windows, versions ------------------------------------------------------------


def test_every_value_keeps_its_unit_from_the_dbc(done: Results, kmeans_done: Results) -> None:
    rows = done.records() + kmeans_done.records()
    speed, steer = dbc_unit("SPEED"), dbc_unit(STEER)
    assert speed == "km/h" and steer
    units = {(r["signal"], r["method"], r["key"]): r["unit"] for r in rows}
    assert units[("SPEED", "mean", "")] == "km/h"
    assert units[("SPEED", "max", "")] == "km/h"
    assert units[("SPEED", "variance", "")] == "(km/h)²"
    assert units[("SPEED", "quantiles", "0.5")] == "km/h"
    assert units[("SPEED", "histogram", "edges[0]")] == "km/h"
    assert units[("SPEED", "histogram", "counts[0]")] is None  # a count of samples
    assert units[("SPEED", "count", "")] is None
    assert units[(STEER, "mean", "")] == steer
    assert units[(None, "kmeans", "centroids[0][0]")] == "km/h"  # the first feature
    assert units[(None, "kmeans", "centroids[0][1]")] == steer


def test_every_vehicle_row_has_its_window_samples_and_code_version(done: Results) -> None:
    rows = done.records()
    assert rows and all(set(r) == set(COLUMNS) for r in rows)
    vehicle_rows = [r for r in rows if r["scope"] == "vehicle"]
    assert {r["vehicle"] for r in vehicle_rows} == {"car-1", "car-2", "car-3"}
    for r in vehicle_rows:
        assert r["ok"] and r["code_version"] == "builtin:0.1"
        assert r["window_start"] is not None and r["window_end"] > r["window_start"]
        assert r["window_end"] - r["window_start"] <= 1.0 + 1e-6  # the asked 1 s window, in signal time
        if r["signal"] is not None:
            assert r["samples"] > 0
    # a vehicle's count is the samples its window held
    for r in vehicle_rows:
        if r["method"] == "count":
            assert r["value"] == r["samples"]
    fleet_rows = [r for r in rows if r["scope"] == "fleet"]
    for r in fleet_rows:
        if r["method"] == "count":  # the fleet's count is the sum of the vehicles' windows
            assert r["value"] == r["samples"]
            mine = [v["value"] for v in vehicle_rows if v["method"] == "count" and v["signal"] == r["signal"]
                    and v["iteration"] == r["iteration"]]
            assert r["value"] == sum(mine)


def test_the_fleet_rows_are_the_fleet_value(done: Results) -> None:
    fleet = done.fleet()
    assert set(fleet["scope"]) == {"fleet"} and fleet["vehicle"].isna().all()
    means = fleet[(fleet.method == "mean") & (fleet.signal == "SPEED")].sort_values("iteration")
    assert list(means.iteration) == list(range(1, ITERATIONS + 1))
    for it, value in zip(means.iteration, means.value, strict=True):
        assert value == done.iteration(it).reports[0].fleet["mean"]["SPEED"]


# --- equal to the CLI's output ----------------------------------------------------------------


def _equal_rows(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert set(x) == set(y)
        for k in x:
            assert same(x[k], y[k]), (k, x[k], y[k])


def test_to_pandas_equals_the_json_output_value_for_value(fleet, done: Results) -> None:
    out = run_oodida(fleet, "results", str(done.assignment), "--format", "json")
    assert out.returncode == 0, out.stderr
    printed = [json.loads(line) for line in out.stdout.splitlines()]
    df = done.to_pandas()
    assert list(df.columns) == list(COLUMNS)
    frame_rows = [{k: (None if _missing(v) else v) for k, v in row.items()} for row in df.to_dict("records")]
    _equal_rows(frame_rows, [{k: v for k, v in r.items()} for r in printed])
    # and the reports of `--json` hold the same numbers
    reports = run_oodida(fleet, "results", str(done.assignment), "--json")
    assert reports.returncode == 0, reports.stderr
    for line in reports.stdout.splitlines():
        report = json.loads(line)
        it = report["iteration"]
        for vehicle, answer in report["vehicles"].items():
            mean = df[(df.iteration == it) & (df.vehicle == vehicle) & (df.method == "mean") & (df.signal == "SPEED")]
            assert mean.value.item() == answer["value"]["mean"]["SPEED"]
            assert mean.window_start.item() == answer["t_start"]
            assert mean.unit.item() == answer["units"]["SPEED"]


def _missing(v: object) -> bool:
    try:
        import pandas as pd

        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def test_csv_and_parquet_read_back_equal(fleet, done: Results, tmp_path) -> None:
    import pandas as pd

    csv_path, parquet_path = tmp_path / "r.csv", tmp_path / "r.parquet"
    for fmt, path in (("csv", csv_path), ("parquet", parquet_path)):
        out = run_oodida(fleet, "results", str(done.assignment), "--format", fmt, "--out", str(path))
        assert out.returncode == 0, out.stderr
        assert f"to {path}" in out.stderr
    df = done.to_pandas()
    from_parquet = pd.read_parquet(parquet_path)
    pd.testing.assert_frame_equal(from_parquet, df)
    from_csv = pd.read_csv(csv_path, keep_default_na=False, na_values={"value": [""], "samples": [""],
                           "window_start": [""], "window_end": [""]})
    assert list(from_csv.columns) == list(COLUMNS)
    assert len(from_csv) == len(df)
    assert from_csv["value"].tolist() == pytest.approx(df["value"].tolist(), nan_ok=True, rel=0, abs=0)
    assert from_csv["window_start"].tolist() == pytest.approx(df["window_start"].tolist(), rel=0, abs=0)
    assert (from_csv["unit"].replace("", None).tolist() == df["unit"].tolist())
    # the same, through the client and without pandas for CSV
    assert done.to_csv() == csv_path.read_text()


def test_results_selects_an_iteration_and_the_fleet_only(fleet, done: Results) -> None:
    out = run_oodida(fleet, "results", str(done.assignment), "--format", "json", "--iteration", "2", "--fleet-only")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows and {r["iteration"] for r in rows} == {2} and {r["scope"] for r in rows} == {"fleet"}
    _equal_rows(rows, done.iteration(2).fleet_records())
    table = run_oodida(fleet, "results", str(done.assignment), "--format", "table", "--iteration", "1")
    assert table.returncode == 0, table.stderr
    head = table.stdout.splitlines()[0].split()
    assert head[:7] == ["iteration", "who", "signal", "method", "key", "value", "unit"]
    assert re.search(r"^\s*1\s+fleet\s+SPEED\s+mean\s+\S+\s+km/h", table.stdout, re.M)


# --- every method, from a plain script ---------------------------------------------------------

SCRIPT = textwrap.dedent('''
    import json, sys
    import oodida

    fleet = oodida.connect()          # OODIDA_CREDENTIALS and OODIDA_SERVER, as an analyst's shell has
    out = {}
    vehicles = fleet.vehicles()
    out["vehicles"] = sorted(vehicles.vehicle)
    signals = fleet.signals()
    out["signals"] = len(signals)
    a = fleet.submit(signals=["SPEED"], window="0.5s", iterations=0, on_board=[sys.argv[1]],
                     off_board=sys.argv[1], params={"limit": 30.0}, deadline=20)
    out["assignment"] = a.id
    first = next(iter(a.follow()))
    out["first"] = first.iterations
    deployed = a.deploy(sys.argv[2], side="on_board")
    out["deployed"] = [deployed.code_hash, deployed.ok, sorted(deployed.acked)]
    versions = a.versions()
    out["versions"] = list(versions.kind)
    v1 = versions[(versions.side == "on_board") & (versions.kind == "submit")].code_hash.iloc[0]
    back = a.rollback(v1[:8], side="on_board")
    out["rollback"] = [back.code_hash, back.rollback, back.ok]
    seen = []
    for it in a.follow(since=first.iterations[0]):
        seen.append((it.iterations[0], it.reports[0].code_hash))
        if it.reports[0].code_hash == v1 and len(seen) > 1:
            break
    out["seen"] = seen
    out["cancel"] = a.cancel()
    final = a.wait(progress=True)        # piped: no progress line
    out["state"] = final.state
    df = final.to_pandas()
    out["rows"] = len(df)
    out["methods"] = sorted(set(df.method))
    out["fleet_scopes"] = sorted(set(final.fleet().scope))
    out["results_equal"] = a.results().records() == final.records()
    fleet.close()
    print(json.dumps(out))
''')


def test_every_method_from_a_plain_script(fleet, tmp_path) -> None:
    script = tmp_path / "analyst.py"
    script.write_text(SCRIPT)
    examples = REPO / "examples"
    out = subprocess.run([sys.executable, str(script), str(examples / "speeding.py"), str(examples / "speeding_v2.py")],
                         env=env_of(fleet), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # nothing on a pipe: no progress bar, no warnings
    got = json.loads(out.stdout)
    assert got["vehicles"] == fleet.vehicle_ids
    assert got["signals"] >= 2
    assert got["first"] == [1]
    code_hash, ok, acked = got["deployed"]
    assert ok and acked == fleet.vehicle_ids
    assert got["versions"] == ["submit", "submit", "deploy"]
    assert got["rollback"][1:] == [True, True]
    assert got["rollback"][0] != code_hash
    assert got["seen"][-1][1] == got["rollback"][0]  # computed by the version rolled back to
    assert got["cancel"] == "cancelled" and got["state"] == "cancelled"
    assert got["rows"] > 0 and got["methods"] == ["module"]
    assert got["fleet_scopes"] == ["fleet"]
    assert got["results_equal"]


# --- from inside a running event loop (a notebook) ---------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.timeout(120)
async def test_the_sync_client_works_inside_a_running_event_loop(fleet, monkeypatch) -> None:
    """A notebook cell runs in a thread that already runs an event loop: the sync
    client must work there (its own loop, in a thread), and so must the AsyncClient."""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    asyncio.get_running_loop()  # we are inside one
    client = oodida.connect(fleet.analyst_credentials, server=f"127.0.0.1:{fleet.port}")
    try:
        assert sorted(client.vehicles(as_frame=False), key=lambda v: v["vehicle"])[0]["vehicle"] == "car-1"
        a = client.submit(signals=["SPEED"], window="2s", iterations=2, on_board=["mean"], deadline=20)
        results = a.wait(progress=True)
        assert results.state == "done" and len(results) == 2
        assert client.results(a.id).records() == results.records()
        assert [r.iterations for r in client.follow(a.id)] == [[1], [2]]
    finally:
        client.close()
    async with await AsyncClient.connect(fleet.analyst_credentials, server=f"127.0.0.1:{fleet.port}") as aio:
        b = await aio.submit(signals=["SPEED"], window="1s", iterations=2, on_board=["max"], deadline=20)
        status_while_following = []

        async def follow() -> list[int]:
            return [it.iterations[0] async for it in b.follow()]

        following = asyncio.create_task(follow())
        while not following.done():  # one connection: a follow does not block other requests
            status_while_following.append((await b.info()).state)
            await asyncio.sleep(0.2)
        assert await following == [1, 2]
        assert status_while_following and status_while_following[0] == "running"
        assert (await b.results()).state == "done"
        signals = await aio.signals(as_frame=False)
        assert {r["signal"] for r in signals} == {"SPEED.SPEED", STEER}  # what the agents record, canonical
        assert all(r["vehicles"] == fleet.vehicle_ids for r in signals)
        assert any(r["assignment"] == b.id and r["state"] == "done" for r in await aio.assignments(as_frame=False))
        assert await b.cancel() == "done"
        assert len(await aio.versions(b.id, as_frame=False)) == 0
        with pytest.raises(RequestFailed, match="no assignment 99999"):
            await aio.results(99999)
    got = {"results": results}
    assert got["results"].complete
    shown = terminal.getvalue()
    # "iteration 2 of 2: 3 of 3 answered, 12 s to the deadline", rewritten in place
    assert re.search(r"iteration [12] of 2: \d of 3 answered, \d+ s to the deadline", shown), shown
    assert "\r" in shown and shown.endswith("\n")


def test_wait_shows_no_progress_when_piped(fleet) -> None:
    out = run_oodida(fleet, "submit", "--signals", "SPEED", "--window", "0.5s", "--iterations", "2",
                     "--on-board", "mean", "--wait", "--deadline", "20")
    assert out.returncode == 0, out.stderr
    assert "answered" not in out.stderr and "\r" not in out.stdout + out.stderr


def test_a_refusal_is_request_failed_with_the_reason(fleet) -> None:
    with oodida.connect(fleet.analyst_credentials, server=f"127.0.0.1:{fleet.port}") as client:
        with pytest.raises(RequestFailed, match="no assignment 424242"):
            client.cancel(424242)
        with pytest.raises(oodida.client.SpecError, match="window"):
            client.submit(signals=["SPEED"], window="five seconds")
        assert client.vehicles().shape[0] == 3  # the connection goes on after both


def test_without_the_analyst_extra_records_work_and_frames_say_what_to_install(fleet, done: Results, tmp_path) -> None:
    script = tmp_path / "bare.py"
    script.write_text(textwrap.dedent(f'''
        import sys
        for name in ("pandas", "pyarrow", "matplotlib"):
            sys.modules[name] = None            # as if not installed
        import oodida
        from oodida.client import MissingExtra
        fleet = oodida.connect()
        r = fleet.results({done.assignment})
        assert isinstance(fleet.vehicles(), list)       # plain records
        assert len(r.records()) > 0 and r.to_csv().startswith("assignment,")
        assert isinstance(r.fleet(), list)
        for ask in (r.to_pandas, lambda: r.to_parquet("x.parquet"), r.plot):
            try:
                ask()
            except MissingExtra as exc:
                print(exc)
        fleet.close()
    '''))
    out = subprocess.run([sys.executable, str(script)], env=env_of(fleet), capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and all("pip install 'oodida[analyst]'" in line for line in lines)
    assert lines[0].startswith("a DataFrame needs pandas") and lines[2].startswith("a plot needs matplotlib")


def test_the_client_imports_neither_server_nor_agent() -> None:
    code = ("import sys, oodida.client; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('server', 'agent', 'analytics', 'sandbox', 'hw')]; print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_nan_is_same_as_nan() -> None:
    assert same(math.nan, math.nan) and not same(1.0, math.nan)
