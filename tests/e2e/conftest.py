"""End-to-end fixtures: the quickstart notebook, executed once per session in a real kernel."""

from __future__ import annotations

import re

import pytest

from tests.e2e.notebooks import execute, stdout_of


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory: pytest.TempPathFactory):
    """(project dir, executed notebook, MLflow run id) of one quickstart run."""
    project = tmp_path_factory.mktemp("quickstart")
    nb = execute("01_quickstart.ipynb", project)
    run_id = re.search(r"MLflow run:\s+([0-9a-f]{32})", stdout_of(nb)).group(1)
    return project, nb, run_id
