"""part1/CNN.ipynb runs headlessly without errors and is stored without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient


def _notebook(repo_root: Path) -> nbformat.NotebookNode:
    return nbformat.read(repo_root / "part1" / "CNN.ipynb", as_version=4)


def test_notebook_is_stored_without_outputs(repo_root: Path) -> None:
    for cell in _notebook(repo_root).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_notebook_executes_without_errors(repo_root: Path) -> None:
    notebook = _notebook(repo_root)
    # With no kernelspec folders to search, jupyter_client falls back to ipykernel's
    # built-in "python3" spec, which launches the kernel with sys.executable. So the
    # notebook runs in this interpreter (e.g. the venv) whatever other kernelspecs
    # are installed on the machine.
    kernel = KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
    client = NotebookClient(
        notebook,
        km=kernel,
        timeout=120,
        # Run from part1/, as Jupyter does when the notebook is opened there.
        resources={"metadata": {"path": str(repo_root / "part1")}},
    )
    client.execute()  # raises CellExecutionError, with the failing cell, on any error
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert "checks agree with PyTorch" in text
