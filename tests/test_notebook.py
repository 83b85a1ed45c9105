"""notebooks/explore_run.ipynb: committed without outputs, and it runs against a real pipeline run."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from sentiment_pipeline.core import paths
from sentiment_pipeline.core.files import read_csv

from .conftest import PROJECT_ROOT

NOTEBOOK = PROJECT_ROOT / "notebooks" / "explore_run.ipynb"
CELL_TIMEOUT = 120  # seconds per cell
# What a Jupyter front end or kernel adds on save that differs per machine and run: not committed.
CELL_NOISE = {"execution", "ExecuteTime", "collapsed", "scrolled"}
NOTEBOOK_NOISE = {"widgets", "vscode", "toc", "varInspector"}
PLOTS = 6  # class balance, text lengths, n-grams, CV comparison, confusion matrix, calibration


def read_notebook() -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    return notebook


def test_the_notebook_is_committed_without_outputs_or_run_metadata():
    notebook = read_notebook()
    clear = "clear them before committing (Jupyter: Edit > Clear Outputs of All Cells)"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {cell.id} has outputs: {clear}"
            assert cell.execution_count is None, f"cell {cell.id} has an execution count: {clear}"
        assert not CELL_NOISE & set(cell.metadata), f"cell {cell.id} metadata {dict(cell.metadata)}"
    assert not NOTEBOOK_NOISE & set(notebook.metadata)
    assert "version" not in notebook.metadata.get("language_info", {}), "the kernel's Python version"
    assert notebook.metadata.kernelspec.name == "python3"


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def _text(output: dict) -> str:
    return output.get("text") or output.get("data", {}).get("text/html") or output.get("data", {}).get("text/plain", "")


@pytest.mark.e2e
def test_the_notebook_runs_against_a_pipeline_run_and_draws_every_plot(served_project, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    notebook = read_notebook()
    # Which interpreter the kernel runs on: jupyter_client starts a `python` kernelspec with
    # sys.executable, so this venv's packages (and the installed sentiment_pipeline) are the ones used.
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable, end='')", id="kernel-check"))
    before = _tree(served_project)
    monkeypatch.setenv("SENTIMENT_PROJECT", str(served_project))
    # The kernel works in tmp_path (anything written lands there); a failing cell raises here.
    NotebookClient(notebook, kernel_name="python3", timeout=CELL_TIMEOUT,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    kernel_check = notebook.cells.pop()
    assert Path(kernel_check.outputs[0]["text"]).resolve() == Path(sys.executable).resolve()
    assert _tree(served_project) == before, "the notebook wrote into the shared fixture project"

    outputs = {cell.id: cell.outputs for cell in notebook.cells if cell.cell_type == "code"}
    for cell_id, cell_outputs in outputs.items():
        assert not [o for o in cell_outputs if o.output_type == "error"], cell_id
        stderr = "".join(o.text for o in cell_outputs if o.output_type == "stream" and o.name == "stderr")
        assert "Warning" not in stderr, f"cell {cell_id}: {stderr}"
    plot_cells = [cell.id for cell in notebook.cells if cell.cell_type == "code" and "plt.show()" in cell.source]
    assert len(plot_cells) == PLOTS
    for cell_id in plot_cells:
        images = [o for o in outputs[cell_id] if "image/png" in o.get("data", {})]
        assert len(images) == 1, f"cell {cell_id} drew {len(images)} figures"

    # it read the fixture's run, not the checkout's: its row counts and its most confident error
    train, test = read_csv(served_project / paths.TRAIN_FILE), read_csv(served_project / paths.TEST_FILE)
    assert f"{len(train)} train and {len(test)} test rows" in "".join(_text(o) for o in outputs["setup"])
    errors = pd.read_csv(served_project / paths.ERROR_ANALYSIS, keep_default_na=False)
    worst = errors[errors["section"] == "most_confident_error"].iloc[0]
    table = "".join(_text(o) for o in outputs["confident-errors"])
    assert f"<td>{worst['data_row']}</td>" in table and f"{worst['p_predicted']}" in table
