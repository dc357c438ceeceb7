"""Running the project's notebooks in a real Jupyter kernel for the end-to-end tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"


def execute(name: str, project: Path, timeout: int = 600) -> Any:
    """Execute ``notebooks/<name>`` in a fresh python3 kernel whose workspace is ``project``.

    Returns the executed notebook; a failing cell raises nbclient's CellExecutionError.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    env = {**os.environ, "SHIPYARD_PROJECT_DIR": str(project)}
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute(env=env)
    return nb


def cell_containing(nb: Any, text: str) -> Any:
    for cell in nb.cells:
        if cell.cell_type == "code" and text in cell.source:
            return cell
    raise AssertionError(f"no code cell contains {text!r}")


def stdout_of(nb: Any) -> str:
    return "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )
