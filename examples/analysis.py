# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A fleet's speed, from Python
#
# Connect to the server, ask every vehicle for the mean and the distribution of its
# speed over a few windows, load the answers into pandas, plot them, and replace the
# on-board code of a running assignment without stopping it.
#
# Run it as a script (`python examples/analysis.py`) or open it as a notebook
# (`jupytext --to notebook examples/analysis.py`). It needs `pip install 'oodida[analyst]'`
# and a credential file: `OODIDA_CREDENTIALS`, or `~/.config/oodida/credentials.toml`
# (`oodida demo` and `oodida init` write them).

# %%
import os
from pathlib import Path

import oodida

HERE = Path(globals().get("__file__", "examples/analysis.py")).resolve().parent
WINDOW = os.environ.get("OODIDA_EXAMPLE_WINDOW", "5s")  # the tests use shorter windows
OUT = Path(os.environ.get("OODIDA_EXAMPLE_OUT", "."))

fleet = oodida.connect()  # the credential file; server="HOST:PORT" to override it
fleet.vehicles()

# %% [markdown]
# ## Mean speed and its distribution, four windows

# %%
a = fleet.submit(
    signals=["SPEED"], window=WINDOW, iterations=4, on_board=["mean", "histogram", "quantiles"],
    params={"bins": {"count": 8, "range": [0.0, 160.0]}, "q": [0.1, 0.5, 0.9]}, deadline=30,
)
results = a.wait(progress=True)
print(results, "every iteration complete:", results.complete)

# %%
df = results.to_pandas()
means = df[(df.method == "mean") & (df.key == "")]
table = means.pivot_table(index="iteration", columns=means.vehicle.fillna("fleet"), values="value")
print(f"mean speed ({means.unit.iloc[0]}) per iteration:\n{table}")

# %%
fig = results.plot()
fig.savefig(OUT / "speed.png")
print("figure:", [ax.get_title() for ax in fig.axes])
fig  # shown inline in a notebook  # noqa: B018

# %% [markdown]
# ## Replace the on-board code while it runs
#
# `speeding.py` counts the samples over a limit; version 2 also says by how much.
# The deploy lands between two iterations; `versions()` shows which version
# computed which iteration.

# %%
m = fleet.submit(
    signals=["SPEED"], window=WINDOW, iterations=0, on_board=[str(HERE / "speeding.py")],
    off_board=str(HERE / "speeding.py"), params={"limit": 65.0}, deadline=30,
)
first = next(iter(m.follow()))
print("first iteration, version 1:", first.fleet_records()[:3])
outcome = m.deploy(HERE / "speeding_v2.py", side="on_board")
print(f"deployed {outcome.code_hash[:12]}: {len(outcome.acked)} vehicles run it")
for it in m.follow(since=first.iterations[0]):
    if it.reports[0].code_hash == outcome.code_hash:
        print("iteration", it.iterations[0], "computed by version 2:", it.records()[0]["code_version"][:12])
        break
m.cancel()
versions = m.versions()
print(versions)

# %%
fleet.close()
