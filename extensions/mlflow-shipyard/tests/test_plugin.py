"""The plugin as MLflow sees it: discovered through its entry point, driven through MLflow's API and CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from mlflow.exceptions import MlflowException

import shipyard
from tests.docker_support import docker_engine  # noqa: F401  (fixture)


def test_mlflow_finds_the_target_through_its_entry_point() -> None:
    from mlflow.deployments import get_deploy_client

    from mlflow_shipyard import ShipyardDeploymentClient

    assert isinstance(get_deploy_client("shipyard"), ShipyardDeploymentClient)
    out = subprocess.run([sys.executable, "-m", "mlflow", "deployments", "help", "-t", "shipyard"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "promote a registered model version" in out.stdout


def test_wrong_uris_and_unsupported_calls_say_what_to_do(workspace) -> None:
    from mlflow.deployments import get_deploy_client

    client = get_deploy_client("shipyard")
    with pytest.raises(MlflowException, match="models:/NAME/VERSION"):
        client.create_deployment("iris", "runs:/abc/model")
    with pytest.raises(MlflowException, match="deployment name is the registered model's name"):
        client.create_deployment("iris", "models:/other/1")
    with pytest.raises(MlflowException, match="shipyard rollback iris"):
        client.delete_deployment("iris")
    with pytest.raises(MlflowException, match="no champion|does not exist|not found"):
        client.get_deployment("nobody")


@pytest.mark.docker
def test_create_promotes_and_get_list_read_the_champion_under_one_slug(workspace, docker_engine) -> None:  # noqa: F811
    """A name with a capital and a space: bento, image, bundle, lock and the plugin agree on one name."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from shipyard import registry
    from shipyard._core.workspace import slug
    from shipyard.gates import threshold

    name = "Iris Model"
    X, y = load_iris(return_X_y=True, as_frame=True)
    with shipyard.start_run("plugin") as run:
        model = LogisticRegression(max_iter=500).fit(X, y)
        shipyard.log_metric("accuracy", model.score(X, y))
        shipyard.log_model(model, name="model", input_example=X.head(5))
    version = registry.register(name, run.run_id)
    shipyard.check(f"{name}/{version.version}", gates=[threshold("accuracy >= 0.9")])

    env = {**os.environ, "SHIPYARD_PROJECT_DIR": str(workspace.project_dir)}
    out = subprocess.run(
        [sys.executable, "-m", "mlflow", "deployments", "create", "-t", "shipyard", "--name", name,
         "-m", f"models:/{name}/{version.version}", "-C", "reason=first release"],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert registry.champion(name).version == version.version

    from mlflow.deployments import get_deploy_client

    deployment = get_deploy_client("shipyard").get_deployment(name)
    assert deployment["version"] == version.version
    # no push registry here: the bundle pins the local tag, which the engine resolves to the built image
    assert docker_engine.images.get(deployment["image"]).id.startswith("sha256:")
    assert deployment["bundle"] == str(workspace.bundle_dir(name, version.version))
    assert deployment["lineage"]["mlflow_run_id"] == run.run_id
    assert [d["name"] for d in get_deploy_client("shipyard").list_deployments()] == [name]

    same = slug(name)
    assert same.startswith("iris-model-")
    handoff = json.loads((workspace.bundle_dir(name, version.version) / "handoff.json").read_text())
    assert handoff["image"]["bento"].split(":")[0] == same  # the bento
    assert handoff["image"]["tag"].startswith(f"shipyard/{same}:")  # the image
    assert (workspace.bundles_dir / same / version.version).is_dir()  # the bundle folder
    assert workspace.lock_path("promote", name).name == f"promote-{same}.lock"  # the lock
    assert workspace.lock_path("promote", name).exists()
    assert (workspace.bundles_dir / same / "current").resolve() == workspace.bundle_dir(name, version.version)
