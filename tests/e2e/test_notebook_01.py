"""The quickstart notebook in a real Jupyter kernel, checked with the MLflow and Metaflow clients."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from shipyard._core import lineage
from tests.e2e.notebooks import cell_containing


@pytest.fixture(scope="module")
def executed(quickstart):
    return quickstart


@pytest.fixture(scope="module")
def client(executed):
    from mlflow.tracking import MlflowClient

    project, _, _ = executed
    return MlflowClient(tracking_uri=(uri := f"sqlite:///{project / '.shipyard' / 'mlflow.db'}"), registry_uri=uri)


def test_run_has_params_and_full_metric_history(executed, client) -> None:
    _, _, run_id = executed
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "20"
    assert run.data.params["seed"] == "7"
    for metric in ("train/log_loss", "val/accuracy"):
        history = client.get_metric_history(run_id, metric)
        assert sorted(p.step for p in history) == list(range(20)), metric
    assert run.data.metrics["accuracy"] > 0.9


def test_model_is_logged_loadable_and_pinned(executed, client, tmp_path: Path, request) -> None:
    import mlflow
    import mlflow.pyfunc
    from sklearn.datasets import load_breast_cancer

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)  # "models:/m-…" resolves in that store
    request.addfinalizer(lambda: mlflow.set_tracking_uri(previous))

    _, _, run_id = executed
    tags = client.get_run(run_id).data.tags
    uri = tags[lineage.model_tag("model", "uri")]
    assert tags[lineage.model_tag("model", "flavor")] == "sklearn"
    model = mlflow.pyfunc.load_model(uri)
    assert model.metadata.signature is not None
    X = load_breast_cancer(as_frame=True).data.head(10)
    assert set(model.predict(X)) <= {0, 1}
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path)))
    pins = (local / "requirements.txt").read_text().split()
    assert any(p.startswith("scikit-learn==") for p in pins)
    assert all("==" in p for p in pins)


def test_datasets_are_fingerprinted(executed, client) -> None:
    _, _, run_id = executed
    run = client.get_run(run_id)
    for name in ("train", "holdout"):
        assert re.fullmatch(r"[0-9a-f]{64}", run.data.tags[lineage.data_tag(name, "sha256")])
    assert run.data.tags[lineage.data_tag("train", "rows")] == "426"
    names = {d.dataset.name for d in run.inputs.dataset_inputs}
    assert {"train", "holdout"} <= names
    profile = client.download_artifacts(run_id, "datasets/train.profile.json")
    assert "mean radius" in Path(profile).read_text()


def test_lineage_tags_point_at_the_cell_and_metaflow(executed, client) -> None:
    import metaflow

    project, nb, run_id = executed
    tags = client.get_run(run_id).data.tags
    cell = cell_containing(nb, "class QuickstartFlow").source
    assert tags[lineage.SOURCE_KIND] == "notebook-cell"
    assert tags[lineage.SOURCE_SHA256] == hashlib.sha256(cell.encode()).hexdigest()
    assert tags[lineage.ENV_LOCK_SHA256]
    pathspec = tags[lineage.PATHSPEC]
    metaflow.metadata(f"local@{project / '.shipyard' / 'metaflow'}")
    metaflow.namespace(None)
    mf_run = metaflow.Run(pathspec)
    assert mf_run.successful
    assert f"{lineage.MLFLOW_RUN_TAG}:{run_id}" in mf_run.tags
    assert mf_run["end"].task["accuracy"].data == pytest.approx(client.get_run(run_id).data.metrics["accuracy"])


def test_gates_declared_on_the_train_step_are_recorded(executed, client) -> None:
    _, _, run_id = executed
    tags = client.get_run(run_id).data.tags
    assert tags["shipyard.gate.verdict"] == "pass"
    assert tags["shipyard.gate.threshold.accuracy"] == "pass"
    assert tags["shipyard.gate.champion_challenger"] == "pass"


def test_ci_gate_check_agrees_with_the_notebook(executed) -> None:
    import os
    import subprocess
    import sys

    project, _, run_id = executed
    env = {**os.environ, "SHIPYARD_PROJECT_DIR": str(project), "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-m", "shipyard.cli", "gates", "check", run_id],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "champion_challenger" in out.stdout
