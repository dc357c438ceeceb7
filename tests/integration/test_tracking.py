"""Script-style tracking against a real MLflow sqlite store: runs, datasets, models of each flavor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import shipyard
from shipyard._core import lineage


@pytest.fixture
def iris():
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True, as_frame=True)


def test_start_run_records_metrics_params_and_environment(workspace, mlflow_client) -> None:
    with shipyard.start_run("scripts", run_name="first") as run:
        for i in range(1000):
            shipyard.log_metric("loss", 1.0 / (i + 1))
        shipyard.log_metrics({"a": 1, "b": 2.5}, step=3)
        shipyard.log_params({"lr": 0.01}, depth=4)
        assert shipyard.active_run_id() == run.run_id
    stored = mlflow_client.get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"lr": "0.01", "depth": "4"}
    history = mlflow_client.get_metric_history(run.run_id, "loss")
    assert [p.step for p in sorted(history, key=lambda p: p.step)] == list(range(1000))
    assert mlflow_client.get_metric_history(run.run_id, "b")[0].step == 3
    assert stored.data.tags[lineage.MANAGED] == "true"
    assert stored.data.tags[lineage.PYTHON]
    experiment = mlflow_client.get_experiment(stored.info.experiment_id)
    assert experiment.artifact_location.startswith((workspace.artifacts_dir).as_uri())


def test_a_block_that_raises_still_stores_its_points(workspace, mlflow_client) -> None:
    with pytest.raises(RuntimeError, match="diverged"):
        with shipyard.start_run("scripts") as run:
            for i in range(250):
                shipyard.log_metric("loss", float(i))
            raise RuntimeError("diverged")
    assert mlflow_client.get_run(run.run_id).info.status == "FAILED"
    assert len(mlflow_client.get_metric_history(run.run_id, "loss")) == 250


def test_dataset_fingerprint_schema_and_profile(workspace, mlflow_client, iris) -> None:
    X, y = iris
    frame = X.assign(species=y.map({0: "setosa", 1: "versicolor", 2: "virginica"}))
    frame.loc[0, "sepal length (cm)"] = np.nan
    with shipyard.start_run("data") as run:
        info = shipyard.log_dataset(frame, name="train")
        again = shipyard.log_dataset(frame.copy(), name="train_copy")
        changed = shipyard.log_dataset(frame.assign(**{"petal width (cm)": frame["petal width (cm)"] + 0.1}), name="x")
        array = shipyard.log_dataset(X.to_numpy(), name="array")
    assert info.sha256 == again.sha256 != changed.sha256
    assert info.rows == 150 and array.schema == {f"f{i}": "float64" for i in range(4)}
    profile = info.profile["columns"]
    assert profile["sepal length (cm)"]["nulls"] == 1
    assert profile["species"]["kind"] == "categorical" and profile["species"]["top"]["setosa"] == 50
    assert profile["petal width (cm)"]["min"] == pytest.approx(0.1)
    tags = mlflow_client.get_run(run.run_id).data.tags
    assert tags[lineage.data_tag("train", "sha256")] == info.sha256
    stored = json.loads(Path(mlflow_client.download_artifacts(run.run_id, "datasets/train.profile.json")).read_text())
    assert stored["sha256"] == info.sha256 and stored["profile"]["rows"] == 150


def test_dataset_entity_in_the_store_is_the_one_mlflow_builds(workspace, mlflow_client) -> None:
    import mlflow.data

    rng = np.random.default_rng(0)
    rows = 5000
    holes = rng.random(rows) < 0.1
    words = np.array(["red", "green", "blue"], dtype=object)[rng.integers(0, 3, rows)]
    frame = pd.DataFrame(
        {
            "x": np.where(holes, np.nan, rng.normal(size=rows)),
            "n": rng.integers(0, 100, rows),
            "flag": rng.random(rows) < 0.5,
            "colour": pd.Series(np.where(holes, None, words), dtype=object),
            "shade": pd.Series(pd.Categorical(words)).where(~holes),
            "day": pd.Series(pd.to_datetime(rng.integers(0, 10**9, rows), unit="s")).where(~holes),
            "count": pd.Series(rng.integers(0, 9, rows), dtype="Int64").where(~holes),
            "label": pd.Series(words, dtype="string"),
            "mixed": pd.Series(np.where(holes, 1, words), dtype=object),  # str and int: MLflow gives no schema
        }
    )
    for name, data in (("typed", frame.drop(columns="mixed")), ("untyped", frame)):
        with shipyard.start_run("data") as run:
            shipyard.log_dataset(data, name=name, context="training")
        (stored,) = mlflow_client.get_run(run.run_id).inputs.dataset_inputs
        expected = mlflow.data.from_pandas(data, name=name).to_dict()
        assert stored.dataset.name == name and stored.dataset.profile == expected["profile"]
        assert stored.dataset.schema == expected["schema"], name
        assert [(t.key, t.value) for t in stored.tags] == [("mlflow.data.context", "training")]
    assert expected["schema"] is None  # the untyped frame: same as MLflow, not a guess


def test_dataset_of_values_pandas_cannot_hash_is_still_recorded(workspace, mlflow_client) -> None:
    frame = pd.DataFrame(
        {
            "tokens": pd.Series([["a", "b"], ["c"], None, []], dtype=object),
            "meta": pd.Series([{"k": 1}, {"k": 2}, {}, None], dtype=object),
            "wait": pd.to_timedelta(["1s", "2s", None, "4s"]),
        }
    )
    with shipyard.start_run("data") as run:
        info = shipyard.log_dataset(frame, name="odd")
        again = shipyard.log_dataset(frame.copy(), name="odd_again")
    assert info.sha256 == again.sha256 and info.rows == 4
    assert info.profile["columns"]["tokens"]["top"]["['a', 'b']"] == 1
    assert info.profile["columns"]["wait"]["nulls"] == 1
    datasets = mlflow_client.get_run(run.run_id).inputs.dataset_inputs
    assert [d.dataset.schema for d in datasets] == [None, None]  # timedeltas: MLflow records no schema either


def test_dataset_of_an_unsupported_type_is_a_tracking_error(workspace) -> None:
    with shipyard.start_run("data"):
        with pytest.raises(shipyard.TrackingError, match="cannot read a set"):
            shipyard.log_dataset({1, 2, 3}, name="bad")
        with pytest.raises(shipyard.TrackingError, match="3-dimensional"):
            shipyard.log_dataset(np.zeros((2, 2, 2)), name="cube")


def _logged(workspace, model, example):
    with shipyard.start_run("models"):
        logged = shipyard.log_model(model, name="model", input_example=example)
    loaded = shipyard.tracking.load_model(logged.uri)
    return logged, loaded


def test_sklearn_model_with_pinned_requirements_and_signature(workspace, mlflow_client, iris, tmp_path) -> None:
    import mlflow
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)
    logged, loaded = _logged(workspace, model, X.head(5))
    assert logged.flavor == "sklearn"
    assert any(r.startswith("scikit-learn==") for r in logged.requirements)
    assert loaded.metadata.signature.inputs.input_names() == list(X.columns)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    tags = mlflow_client.get_run(logged.run_id).data.tags
    assert tags[lineage.model_tag("model", "sha256")] == logged.sha256
    from shipyard._core.hashing import model_sha256
    from shipyard.tracking._mlflow import fluent_store

    assert model_sha256(shipyard.tracking.download_model(logged.uri, tmp_path / "ours")) == logged.sha256
    with fluent_store(workspace):  # as a user checks it: MLflow's own download, pointed at the workspace
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=logged.uri, dst_path=str(tmp_path / "theirs")))
    assert model_sha256(local) == logged.sha256


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosted_tree_flavors(workspace, iris, library: str) -> None:
    X, y = iris
    if library == "xgboost":
        import xgboost

        model = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y)
        expected = "xgboost"
    else:
        import lightgbm

        booster = lightgbm.train({"objective": "multiclass", "num_class": 3, "verbose": -1}, lightgbm.Dataset(X, y), 5)
        model, expected = booster, "lightgbm"
    logged, loaded = _logged(workspace, model, X.head(5))
    assert logged.flavor == expected
    assert any(r.startswith(f"{library}==") for r in logged.requirements)
    assert len(loaded.predict(X.head(7))) == 7


def test_plain_object_with_predict_becomes_pyfunc(workspace) -> None:
    class Doubler:
        def predict(self, frame: pd.DataFrame):
            return frame["x"] * 2

    example = pd.DataFrame({"x": [1.0, 2.0]})
    logged, loaded = _logged(workspace, Doubler(), example)
    assert logged.flavor == "pyfunc"
    assert list(loaded.predict(pd.DataFrame({"x": [3.0]}))) == [6.0]


def test_object_without_predict_is_refused(workspace) -> None:
    with shipyard.start_run("models"):
        with pytest.raises(shipyard.TrackingError, match="has no predict"):
            shipyard.log_model(object(), name="model")


def test_tree_ensembles_log_and_load(workspace, iris) -> None:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

    X, y = iris
    for model in (RandomForestClassifier(n_estimators=5, random_state=0), GradientBoostingClassifier(n_estimators=5)):
        model.fit(X, y)
        logged, loaded = _logged(workspace, model, X.head(5))
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_attaching_a_run_imports_mlflow_in_the_callers_thread_before_the_writer_starts(workspace) -> None:
    """The step's code may import MLflow at once; two threads importing it together meet half-made modules."""
    import subprocess
    import sys

    script = (
        "import sys, threading, shipyard\n"
        "from shipyard.tracking import _context\n"
        f"ws = shipyard.init(project_dir={str(workspace.project_dir)!r})\n"
        "before = {t.name for t in threading.enumerate()}\n"
        "assert 'mlflow' not in sys.modules\n"
        "run = _context.attach(ws, 'a' * 32)\n"
        "assert 'mlflow.tracking' in sys.modules, 'MLflow was left to the writer thread to import'\n"
        "assert {t.name for t in threading.enumerate()} - before, 'no writer thread started'\n"
        "run.buffer.close()\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
