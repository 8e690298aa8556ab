"""The tutorial notebook (examples/tutorial.ipynb) runs from top to bottom, with its parameters
made tiny, in a kernel of this test's own Python, and is committed without outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from regspeed.analysis.stats import VERDICTS

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).parents[1] / "examples" / "tutorial.ipynb"
KERNEL = "regspeed-tutorial-test"  # a name no installed kernel has: the test's own kernelspec is the one found
TINY = {"seeds": 2, "budget": 2_048, "strengths": [1e-2]}


def test_the_tutorial_is_committed_valid_and_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    assert sum("parameters" in cell.metadata.get("tags", []) for cell in code) == 1


@pytest.mark.slow
def test_the_tutorial_runs_from_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    with_parameters(notebook, {**TINY, "folder": str(tmp_path / "study")})
    monkeypatch.setenv("JUPYTER_PATH", str(kernelspec(tmp_path / "jupyter")))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend shows the figures
    client = nbclient.NotebookClient(
        notebook, kernel_name=KERNEL, timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    printed = "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []))
    assert "['none', 'l2@0.01'] x 2 seeds" in printed
    assert "4 runs, 0 failed" in printed
    assert any(f"l2@0.01: {verdict} (p = " in printed for verdict in VERDICTS)
    assert " steps, score " in printed and "#" * 8 in printed  # the 6 x 6 board as text, with its walls
    displayed = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert any("image/png" in output.get("data", {}) for output in displayed)  # the learning curves
    assert any("image/gif" in output.get("data", {}) for output in displayed)  # the snake playing
    assert len(list((tmp_path / "study").glob("*-seed*.gif"))) == 1


def with_parameters(notebook: nbformat.NotebookNode, values: dict) -> None:
    """Insert a cell that overrides the ``parameters`` cell's values right after it (as papermill does)."""
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    lines = [f"{name} = {value!r}" for name, value in values.items()]
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell("\n".join(lines)))


def kernelspec(folder: Path) -> Path:
    """A Jupyter data folder holding one kernelspec, :data:`KERNEL`, that runs this Python
    (the one pytest runs in: the project's virtual environment), whatever kernels are installed."""
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    return folder
