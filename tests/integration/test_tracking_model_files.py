"""Downloading and loading logged and registered models, against the embedded store and a real `mlflow server`,
without touching MLflow's process-wide URIs: a user's own ``mlflow.*`` calls keep the store they chose."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import shipyard
from shipyard._core.hashing import model_sha256
from shipyard.tracking._mlflow import URI_VARIABLES, fluent_state, fluent_store, restore_fluent_state

from .conftest import MlflowServer


@pytest.fixture
def users_own_store(tmp_path: Path):
    """MLflow's fluent URIs pointed at a store of the user's own, as a notebook might; put back afterwards."""
    import mlflow

    before = fluent_state()
    tracking = f"sqlite:///{tmp_path / 'users-own.db'}"
    registry = f"sqlite:///{tmp_path / 'users-own-registry.db'}"
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)
    yield tracking, registry, {name: os.environ.get(name) for name in URI_VARIABLES}
    restore_fluent_state(before)


def _unchanged(store: tuple[str, str, dict[str, str | None]]) -> None:
    import mlflow

    tracking, registry, environment = store
    assert mlflow.get_tracking_uri() == tracking
    assert mlflow.get_registry_uri() == registry
    assert {name: os.environ.get(name) for name in URI_VARIABLES} == environment


@pytest.fixture
def iris():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, LogisticRegression(max_iter=500).fit(X, y)


def _log_and_register(ws, model, example, *, fluent_registration: bool):
    """Log ``model`` with shipyard, register it as iris/1 (alias champion) from its ``models:/m-…`` URI."""
    from mlflow.tracking import MlflowClient

    with shipyard.start_run("models") as run:
        logged = shipyard.log_model(model, name="model", input_example=example)
    client = MlflowClient(tracking_uri=ws.tracking_uri, registry_uri=ws.registry_uri)
    client.create_registered_model("iris")
    model_id = logged.uri.removeprefix("models:/")
    if fluent_registration:
        # MLflow's SQL registry store looks a models:/m-… source up through the fluent URIs (a bare
        # MlflowClient()); a tracking server does that on its side.
        with fluent_store(ws):
            version = client.create_model_version("iris", source=logged.uri, run_id=run.run_id, model_id=model_id)
    else:
        version = client.create_model_version("iris", source=logged.uri, run_id=run.run_id, model_id=model_id)
    assert version.source == logged.uri
    client.set_registered_model_alias("iris", "champion", version.version)
    return run, logged


def _every_form(run_id: str, logged_uri: str) -> list[str]:
    return ["models:/iris/1", "models:/iris@champion", logged_uri, f"runs:/{run_id}/model"]


def test_logging_downloading_and_loading_leave_the_users_mlflow_store_alone(
    workspace, users_own_store, iris, tmp_path: Path
) -> None:
    X, model = iris
    run, logged = _log_and_register(workspace, model, X.head(5), fluent_registration=True)
    _unchanged(users_own_store)
    for n, uri in enumerate(_every_form(run.run_id, logged.uri)):
        local = shipyard.tracking.download_model(uri, tmp_path / f"download-{n}")
        assert (local / "MLmodel").is_file(), uri
        assert model_sha256(local) == logged.sha256, uri
        _unchanged(users_own_store)
    loaded = shipyard.tracking.load_model("models:/iris/1")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    _unchanged(users_own_store)
    assert not (tmp_path / "users-own.db").exists(), "shipyard wrote into the user's own MLflow store"


def test_a_tracking_server_serves_the_same_files_without_the_fluent_uris(
    project: Path, server: MlflowServer, users_own_store, iris, tmp_path: Path
) -> None:
    ws = shipyard.init(project_dir=project, tracking_uri=server.uri)
    X, model = iris
    run, logged = _log_and_register(ws, model, X.head(5), fluent_registration=False)
    _unchanged(users_own_store)
    for n, uri in enumerate(_every_form(run.run_id, logged.uri)):
        local = shipyard.tracking.download_model(uri, tmp_path / f"download-{n}", workspace=ws)
        assert model_sha256(local) == logged.sha256, uri
    loaded = shipyard.tracking.load_model(logged.uri, workspace=ws)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    _unchanged(users_own_store)


def test_the_loaded_models_folder_lives_as_long_as_the_model(
    workspace, iris, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    X, model = iris
    with shipyard.start_run("models"):
        logged = shipyard.log_model(model, name="model")
    loaded = shipyard.tracking.load_model(logged.uri)
    (folder,) = (tmp_path / "tmp").glob("shipyard-model-*")
    assert (folder / "model").is_dir()
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    del loaded
    gc.collect()
    assert not folder.exists()


def test_what_cannot_be_downloaded_is_a_tracking_error_that_says_why(workspace, iris, tmp_path: Path) -> None:
    X, model = iris
    with shipyard.start_run("models") as run:
        shipyard.log_model(model, name="model")
    taken = tmp_path / "taken"
    taken.mkdir()
    with pytest.raises(shipyard.TrackingError, match="already exists") as raised:
        shipyard.tracking.download_model(f"runs:/{run.run_id}/model", taken)
    assert raised.value.hint
    cases = {
        "models:/nope/1": "no model at models:/nope/1",
        "models:/m-0123456789abcdef": "no model at models:/m-0123456789abcdef",
        "models:/iris/Production": "not a model URI shipyard can download",
        f"runs:/{run.run_id}/lineage": "has no MLmodel file",
    }
    for n, (uri, message) in enumerate(cases.items()):
        dst = tmp_path / f"attempt-{n}"
        with pytest.raises(shipyard.TrackingError, match=message) as raised:
            shipyard.tracking.download_model(uri, dst)
        assert raised.value.hint, uri
        assert not dst.exists(), f"{uri}: a failed download left {dst} behind"
    with pytest.raises(shipyard.TrackingError, match="no model at"):
        shipyard.tracking.load_model("models:/nope/1")
