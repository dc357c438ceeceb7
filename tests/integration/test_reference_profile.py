"""The reference profile production is held against: which rows it describes, named, and kept on the version."""

from __future__ import annotations

import json
from typing import Any

import pytest

import shipyard
from shipyard import registry
from shipyard._core import lineage
from shipyard.monitoring import drift
from shipyard.packaging.reference import reference_for
from tests.docker_support import register_sklearn_model


def _tracked_model(workspace: Any) -> tuple[str, str, Any]:
    """A model whose run logged its training rows (with a string category) through shipyard."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(5, 2, 3000), "plan": rng.choice(["a", "b", "c"], 3000)})
    y = (frame["x"] + (frame["plan"] == "c") * 2 > 6).astype(int)
    model = Pipeline([
        ("prep", ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])],
                                   remainder="passthrough")),
        ("clf", LogisticRegression()),
    ]).fit(frame, y)
    with shipyard.start_run("reference") as run:
        shipyard.log_dataset(frame.assign(target=y), name="train")
        shipyard.log_model(model, name="model", input_example=frame.head(3))
    version = registry.register("reference-model", run.run_id)
    return "reference-model", version.version, frame


def test_a_tracked_model_is_profiled_from_its_training_rows_and_predictions(workspace, mlflow_client) -> None:
    name, version, frame = _tracked_model(workspace)
    profile = reference_for(name, version)
    assert profile["source"] == "training" and profile["dataset"] == "train"
    assert set(profile["columns"]) == {"x", "plan"}  # the model's input columns, not the target
    assert profile["columns"]["x"]["kind"] == "numeric" and profile["columns"]["plan"]["kind"] == "categorical"
    assert profile["prediction"]["kind"] == "categorical"  # class labels are counted by class
    assert any("1000-row sample" in note for note in profile["notes"])
    # the training rows themselves do not drift against it; the same rows shifted do
    assert not drift.compute_drift(profile, {"x": frame["x"], "plan": frame["plan"]}).drifted_columns
    moved = drift.compute_drift(profile, {"x": frame["x"] + 2.0, "plan": frame["plan"]})
    assert moved.drifted_columns == ["x"]

    # kept on the version: a second call reads it back instead of building another
    tags = mlflow_client.get_model_version(name, version).tags
    assert tags[lineage.REFERENCE_TAG] == profile["fingerprint"] == drift.profile_fingerprint(profile)
    stored = mlflow_client.download_artifacts(
        mlflow_client.get_model_version(name, version).run_id, lineage.REFERENCE_ARTIFACT
    )
    assert json.loads(open(stored, encoding="utf-8").read())["fingerprint"] == profile["fingerprint"]
    assert reference_for(name, version) == profile


def test_a_model_without_logged_data_is_profiled_from_its_input_example_and_says_so(workspace) -> None:
    model = register_sklearn_model(workspace, "plain-mlflow")
    profile = reference_for(model.name, model.version)
    assert profile["source"] == "input_example" and profile["rows"] == 5
    assert any("input example" in note and "log_dataset" in note for note in profile["notes"]), profile["notes"]


def test_a_model_with_no_rows_at_all_gets_a_typed_error(workspace) -> None:
    model = register_sklearn_model(workspace, "no-rows", input_example=False)
    with pytest.raises(shipyard.MonitoringError, match="no rows to hold production against") as info:
        reference_for(model.name, model.version)
    assert "log_dataset" in (info.value.hint or "")
