"""A model image that cannot serve is reported at once, with its log tail, not after the readiness timeout.

Real components throughout: a model registered with MLflow's own API whose
requirements omit its library (so the real image lacks scikit-learn, as a
model logged without its requirements would), built into a real image by
``promote`` and run by the real Docker daemon; and an image whose command
exits.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import shipyard
from shipyard import ContainerFailed
from tests.docker_support import base_image, docker_cli, docker_engine  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

# Far below the 60 s readiness timeout: BentoML's first worker fails within a few seconds.
REPORTED_WITHIN_S = 20.0


@pytest.fixture(scope="module")
def shared_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("smoke-exit") / "project"


@pytest.fixture
def ws(shared_project: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    shared_project.mkdir(exist_ok=True)
    monkeypatch.setenv("SHIPYARD_PROJECT_DIR", str(shared_project))
    return shipyard.init(project_dir=shared_project)


def _register_without_its_library(ws: Any, name: str) -> str:
    """An iris classifier registered with requirements that leave scikit-learn out."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    mlflow.set_tracking_uri(ws.tracking_uri)
    mlflow.set_registry_uri(ws.registry_uri)
    mlflow.set_experiment("smoke-exit")
    with mlflow.start_run():
        mlflow.log_metric("accuracy", model.score(X, y))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X, model.predict(X)),
            input_example=X.head(5),
            pip_requirements=[f"mlflow=={mlflow.__version__}"],
            registered_model_name=name,
        )
    return f"{name}/{info.registered_model_version}"


def _no_smoke_container_left(image: str) -> None:
    """No smoke container of ``image`` is left (other modules may be smoke-testing their own images meanwhile)."""
    left = subprocess.run(
        [docker_cli(), "ps", "-aq", "--filter", "label=shipyard.smoke", "--filter", f"ancestor={image}"],
        capture_output=True, text=True, check=True,
    )
    assert not left.stdout.strip(), "smoke left a container behind"


@pytest.fixture(scope="module")
def broken_promotion(shared_project: Path, base_image: Any) -> dict[str, Any]:  # noqa: F811
    """``promote`` of the model without its library: the error it raised and how long smoke took to say so."""
    from shipyard._core.workspace import reset_workspace

    shared_project.mkdir(exist_ok=True)
    ws = shipyard.init(project_dir=shared_project)
    try:
        version = _register_without_its_library(ws, "iris-nolib")
        shipyard.check(version, gates=[shipyard.gates.threshold("accuracy >= 0.5")], workspace=ws)
        started: dict[str, float] = {}

        def progress(event: Any) -> None:
            if event.stage == "smoke" and event.state == "started":
                started["smoke"] = time.monotonic()

        with pytest.raises(ContainerFailed) as info:
            shipyard.promote(version, progress=progress, workspace=ws)
        smoke_seconds = time.monotonic() - started["smoke"]
        [state_file] = ws.promotions_dir.rglob("*.json")
        image_id = json.loads(state_file.read_text())["stages"]["image"]["outputs"]["image_id"]
        return {"error": info.value, "smoke_seconds": smoke_seconds, "version": version, "image_id": image_id}
    finally:
        reset_workspace()


def test_a_model_server_that_cannot_start_fails_promote_at_once_with_its_log(broken_promotion: dict) -> None:
    error: ContainerFailed = broken_promotion["error"]
    # the container keeps running (BentoML restarts its worker), so there is no exit code to report
    assert error.exit_code is None
    assert error.seconds < REPORTED_WITHIN_S, error.seconds
    assert broken_promotion["smoke_seconds"] < REPORTED_WITHIN_S + 15  # + loading the reference model
    # scikit-learn, or skops, which the service loads scikit-learn models with: both are left out
    missing = re.search(r"ModuleNotFoundError: No module named '(sklearn|skops)'", error.message)
    assert missing, error.message
    tail = error.log_tail.splitlines()
    assert 1 < len(tail) <= 30 and "Application startup failed" in error.log_tail
    text = str(error)  # what promote's caller sees
    assert missing.group(0) in text and "Last 30 lines of `docker logs`" in text
    assert error.log_tail in text
    _no_smoke_container_left(broken_promotion["image_id"])


def test_the_failed_smoke_leaves_champion_unset_and_is_recorded(ws: Any, broken_promotion: dict) -> None:
    from mlflow.tracking import MlflowClient

    name = broken_promotion["version"].split("/")[0]
    assert MlflowClient(ws.tracking_uri, ws.registry_uri).get_registered_model(name).aliases == {}


@pytest.fixture
def exiting_image(broken_promotion: dict, docker_engine: Any) -> Any:  # noqa: F811
    """The same model image, whose command exits as a server missing its library would."""
    tag = f"shipyard-test/exits:{uuid.uuid4().hex[:10]}"
    dockerfile = f'FROM {broken_promotion["image_id"]}\nENTRYPOINT ["python", "-c", "import xgboost"]\n'
    subprocess.run([docker_cli(), "build", "-q", "-t", tag, "-"], input=dockerfile, text=True, check=True,
                   capture_output=True)
    yield tag
    subprocess.run([docker_cli(), "rmi", "-f", tag], capture_output=True)


def test_a_container_that_exits_is_reported_with_its_exit_code_and_log(
    ws: Any, exiting_image: str, broken_promotion: dict
) -> None:
    from shipyard.deploy import smoke

    t0 = time.monotonic()
    with pytest.raises(ContainerFailed) as info:
        smoke(exiting_image, model_version=broken_promotion["version"], record=False)
    elapsed = time.monotonic() - t0
    error = info.value
    assert error.exit_code == 1
    assert error.seconds < 10, error.seconds
    assert elapsed < REPORTED_WITHIN_S, elapsed
    assert "exited with code 1" in error.message and "No module named 'xgboost'" in error.message
    assert "ModuleNotFoundError: No module named 'xgboost'" in error.log_tail
    _no_smoke_container_left(exiting_image)
