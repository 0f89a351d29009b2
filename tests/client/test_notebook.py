"""examples/analysis.py executed as a Jupyter notebook, in a real kernel (whose event
loop already runs when the cells do): connect, submit, wait with a progress display,
DataFrame, plot, deploy a change."""

from __future__ import annotations

import pytest

from tests.client.helpers import REPO, env_of

pytestmark = pytest.mark.integration

INSTALL = "pip install nbclient ipykernel jupytext (or pip install -e '.[test]')"


def test_the_example_runs_as_a_notebook(fleet, tmp_path, monkeypatch) -> None:
    for name in ("nbclient", "ipykernel", "jupytext"):
        pytest.importorskip(name, reason=f"the notebook test needs {name}: {INSTALL}")
    import jupytext
    from nbclient import NotebookClient

    for key, value in env_of(fleet).items():
        monkeypatch.setenv(key, value)  # the kernel inherits them, as from the analyst's shell
    monkeypatch.setenv("OODIDA_EXAMPLE_WINDOW", "1s")
    monkeypatch.setenv("OODIDA_EXAMPLE_OUT", str(tmp_path))
    notebook = jupytext.read(REPO / "examples" / "analysis.py")
    NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "every iteration complete: True" in text
    assert "computed by version 2:" in text
    # the progress bar is a display that the kernel updated in place, not lines of text
    shown = [o["data"]["text/plain"] for o in outputs if o.output_type == "display_data"
             and "text/plain" in o.get("data", {})]
    assert any("iteration 4 of 4" in s and "3 of 3 answered" in s for s in shown), shown
    assert "\r" not in text
    # the vehicles' table is the first cell's value, a DataFrame
    html = [o["data"].get("text/html", "") for o in outputs if o.output_type == "execute_result"]
    assert any("car-1" in h and "<table" in h for h in html)
    assert (tmp_path / "speed.png").exists()
    # and the figure, the value of its cell, is drawn inline
    assert any("image/png" in o.get("data", {}) for o in outputs if o.output_type == "execute_result")
