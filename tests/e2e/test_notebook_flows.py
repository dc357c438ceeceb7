"""Notebook flows behave like the kernel: a notebook written here runs in a real Jupyter kernel.

The notebook sits in a fresh project directory with a helper module next to
it and another under ``src/`` (which the notebook adds to ``sys.path``). Its
flow cell also loads data, appends to a file, prints and calls
``shipyard.run``; an untracked flow is run too. What happened is read back
from the filesystem, the Metaflow client and the MLflow client, not from
shipyard.
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

SETUP_CELL = """
import sys
from pathlib import Path

import shipyard

ws = shipyard.init()
sys.path.insert(0, str(Path("src").resolve()))  # the kernel imports from src/ from now on
import featurize, scoring  # next to the notebook, and under src/
"""

FLOW_CELL = '''
%env SHIPYARD_TEST_MAGIC=kept-by-the-kernel
from pathlib import Path

from metaflow import FlowSpec, step

import shipyard
import featurize

with Path("side_effects.log").open("a") as log:
    log.write("the flow cell ran\\n")
ROWS = [featurize.double(x) for x in range(3)]
rows_seen = len(ROWS)
print("rows:", rows_seen)


@shipyard.track
class HelperFlow(FlowSpec):
    @step
    def start(self):
        import scoring

        self.score = scoring.score(ROWS)
        shipyard.log_metric("score", self.score)
        self.next(self.middle)

    @step
    def middle(self):
        shipyard.log_metric("doubled", featurize.double(self.score))
        self.next(self.end)

    @step
    def end(self):
        pass


result = shipyard.run(HelperFlow)
print("MLflow run:", result.mlflow_run_id, "pathspec:", result.pathspec)
'''

UNTRACKED_CELL = '''
from pathlib import Path

from metaflow import FlowSpec, step


class UntrackedFlow(FlowSpec):
    @step
    def start(self):
        Path("untracked_step_ran").write_text("yes")
        self.next(self.end)

    @step
    def end(self):
        pass


try:
    shipyard.run(UntrackedFlow)
except shipyard.FlowError as exc:
    print("REFUSED:", type(exc).__name__, exc)
'''


def _execute(notebook: Path, project: Path, timeout: int = 600):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(c).strip()) for c in (SETUP_CELL, FLOW_CELL, UNTRACKED_CELL)]
    nbformat.write(nb, notebook)
    env = {**os.environ, "SHIPYARD_PROJECT_DIR": str(project)}
    env.pop("PYTHONPATH", None)  # what the steps import comes from the kernel, not from this test's environment
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(project)}})
    client.execute(env=env)
    return nb


def _stdout(cell) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", []))


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory):
    project = tmp_path_factory.mktemp("notebook-flows")
    (project / "featurize.py").write_text("def double(x):\n    return 2 * x\n", encoding="utf-8")
    (project / "src").mkdir()
    (project / "src" / "scoring.py").write_text("def score(rows):\n    return float(sum(rows))\n", encoding="utf-8")
    nb = _execute(project / "analysis.ipynb", project)
    return project, nb


def test_steps_import_the_modules_next_to_the_notebook_and_on_the_kernels_path(executed) -> None:
    from mlflow.tracking import MlflowClient

    project, nb = executed
    out = _stdout(nb.cells[1])
    run_id = re.search(r"MLflow run: ([0-9a-f]{32})", out).group(1)
    client = MlflowClient(tracking_uri=(uri := f"sqlite:///{project / '.shipyard' / 'mlflow.db'}"), registry_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"score": 6.0, "doubled": 12.0}  # scoring from src/, featurize from beside it


def test_the_flow_cells_side_effects_happen_once_not_once_per_step(executed) -> None:
    import metaflow

    project, nb = executed
    assert (project / "side_effects.log").read_text() == "the flow cell ran\n"
    assert "rows: 3" in _stdout(nb.cells[1])
    pathspec = re.search(r"pathspec: (HelperFlow/\S+)", _stdout(nb.cells[1])).group(1)
    metaflow.metadata(f"local@{project / '.shipyard' / 'metaflow'}")
    metaflow.namespace(None)  # the kernel's runs are in its user's namespace, which this process may not know
    run = metaflow.Run(pathspec)
    assert run.successful
    assert sorted(s.id for s in run) == ["end", "middle", "start"]  # three step processes ran, one line was written
    assert run["start"].task["score"].data == 6.0


def test_an_untracked_flow_is_refused_before_any_step_runs(executed) -> None:
    project, nb = executed
    out = _stdout(nb.cells[2])
    assert "REFUSED: FlowError UntrackedFlow is not tracked" in out
    assert "@shipyard.track" in out
    assert not (project / "untracked_step_ran").exists()
    assert not list((project / ".shipyard" / "metaflow").rglob("UntrackedFlow")), "a Metaflow run was created"
