"""Parity runs on the rows the run left behind: its gate holdout, else a logged dataset, else the input example.

A real Metaflow flow trains a scikit-learn pipeline on string categories and
leaves a holdout (with missing values and a category seen once) for its gate;
``promote`` builds and serves the real image and checks parity on that
holdout. Runs that logged only a dataset, or only an input example, get the
next source, read from the real MLflow store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import shipyard
from tests.docker_support import base_image, docker_engine  # noqa: F401  (fixtures)

FLOW_SOURCE = '''
"""A pricing flow whose gate step leaves a holdout with string categories."""

from metaflow import FlowSpec, step

import shipyard
from shipyard.gates import threshold


@shipyard.track
class PricingFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.train)

    @shipyard.gate(threshold("rmse <= 5", source="holdout"), model_name="pricing-parity")
    @step
    def train(self):
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder

        import tests_parity_data

        X, y = tests_parity_data.pricing(6000)
        X_train, X_test, y_train, y_test = X.iloc[:3000], X.iloc[3000:], y.iloc[:3000], y.iloc[3000:]
        prep = ColumnTransformer([
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
            ("num", SimpleImputer(), ["seats", "income"]),
        ])
        model = Pipeline([("prep", prep), ("reg", Ridge())]).fit(X_train, y_train)
        shipyard.log_model(model, name="model", input_example=X_train.head(5))
        self.holdout = X_test.assign(target=y_test.to_numpy())
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    PricingFlow()
'''

DATA_SOURCE = '''
"""Synthetic pricing data: 25 cities, 3 plans, a rare city seen once (last row), missing incomes."""

import numpy as np
import pandas as pd


def pricing(n):
    rng = np.random.default_rng(0)
    X = pd.DataFrame({
        "city": rng.choice([f"city-{i:02d}" for i in range(25)], size=n),
        "plan": rng.choice(["free", "pro", "team"], size=n, p=[0.6, 0.3, 0.1]),
        "seats": rng.integers(1, 500, size=n),
        "income": rng.normal(50, 15, size=n),
    })
    X.loc[X.index[::37], "income"] = np.nan  # row 0 too: the input example makes income optional
    X.loc[n - 1, "city"] = "Zanzibar"
    y = X["seats"] * 0.01 + X["plan"].map({"free": 0, "pro": 5, "team": 9}) + X["income"].fillna(50) * 0.02
    return X, y + rng.normal(0, 0.5, n)
'''


@pytest.fixture
def data_module(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for folder in (project, tmp_path):  # the project, and beside the flow file, which its steps import from
        (folder / "tests_parity_data.py").write_text(DATA_SOURCE)
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.setenv("PYTHONPATH", str(project))
    import importlib

    return importlib.import_module("tests_parity_data")


def _reference(version: Any, tmp: Path) -> tuple[Any, Any]:
    from shipyard.deploy.parity import load_reference

    return load_reference(version.uri, tmp / "model")


def _recorded_holdout(workspace: Any, run_id: str, tmp: Path) -> Any:
    """The holdout the gate check stored (where its report says), read with plain MLflow and pandas."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    path = shipyard.gates.load_report(run_id).data["holdout"]
    local = MlflowClient(tracking_uri=workspace.tracking_uri).download_artifacts(run_id, path, str(tmp))
    return pd.read_parquet(local)


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_promote_checks_parity_on_the_flow_holdout_covering_every_category(
    workspace: Any, data_module: Any, tmp_path: Path, docker_engine: Any, base_image: Any  # noqa: F811
) -> None:
    from mlflow.tracking import MlflowClient

    from shipyard import registry
    from shipyard.deploy.parity import MAX_PARITY_ROWS, choose_rows

    flow = tmp_path / "pricing_flow.py"
    flow.write_text(FLOW_SOURCE)
    # The flow runs in its own process: in a process that has run a flow, Metaflow's vendored
    # typing_extensions has replaced typing's parameter check, and importing torch (which scikit-learn's
    # estimator discovery does when torch is installed) then raises TypeError.
    ran = subprocess.run(
        [sys.executable, "-c", f"import shipyard; r = shipyard.run({str(flow)!r}); print(r.status, r.mlflow_run_id)"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "SHIPYARD_PROJECT_DIR": str(workspace.project_dir)},
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    status, run_id = ran.stdout.split()[-2:]
    assert status == "FINISHED"
    tags = MlflowClient(tracking_uri=workspace.tracking_uri).get_run(run_id).data.tags
    assert tags["shipyard.gate.verdict"] == "pass"

    promotion = shipyard.promote(run_id, model_name="pricing-parity")
    assert promotion.status == "completed"
    state = json.loads(Path(promotion.state_file).read_text())
    rows_source = state["stages"]["smoke"]["outputs"]["rows_source"]
    assert rows_source == f"holdout of {MAX_PARITY_ROWS} rows, a stratified sample of 3000"
    parity = shipyard.gates.load_report(f"pricing-parity/{promotion.version}")["parity"]
    assert parity.status == "pass", parity.message
    assert parity.message.startswith(f"{MAX_PARITY_ROWS + 5}/{MAX_PARITY_ROWS + 5} rows identical (holdout of")

    # the rows promote sent: the same choice again (it is deterministic), against the stored holdout
    version = registry.resolve(f"pricing-parity/{promotion.version}")
    model, example = _reference(version, tmp_path)
    rows = choose_rows(version, model, example)
    holdout = _recorded_holdout(workspace, run_id, tmp_path)
    assert rows.kind == "holdout" and len(rows.frame) == MAX_PARITY_ROWS
    assert set(rows.frame["city"]) == set(holdout["city"]) and "Zanzibar" in set(rows.frame["city"])
    assert set(rows.frame["plan"]) == {"free", "pro", "team"}
    assert rows.frame["seats"].min() == holdout["seats"].min() and rows.frame["seats"].max() == holdout["seats"].max()
    assert rows.frame["income"].isna().any()  # sent as null: the signature made income optional
    assert list(rows.frame.columns) == ["city", "plan", "seats", "income"]  # the target is not sent


def _run_with(workspace: Any, data_module: Any, name: str, *, log_dataset: bool, sample_rows: int = 1000) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from shipyard import registry
    from shipyard.gates import threshold

    X, y = data_module.pricing(2000)
    prep = ColumnTransformer([
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
        ("num", SimpleImputer(), ["seats", "income"]),
    ])
    with shipyard.start_run(name, workspace=workspace) as run:
        model = Pipeline([("prep", prep), ("reg", Ridge())]).fit(X, y)
        shipyard.log_metric("train_r2", model.score(X, y))
        if log_dataset:
            shipyard.log_dataset(X.assign(target=y), name="train", sample_rows=sample_rows)
        shipyard.log_model(model, name="model", input_example=X.head(5))
    shipyard.check(run.run_id, gates=[threshold("train_r2 >= 0.5")], workspace=workspace)
    return registry.register(name, run.run_id, "model", workspace=workspace), X


def test_a_run_with_only_a_logged_dataset_gives_its_kept_rows_covering_every_category(
    workspace: Any, data_module: Any, tmp_path: Path
) -> None:
    from shipyard.deploy.parity import choose_rows

    version, X = _run_with(workspace, data_module, "pricing-kept", log_dataset=True)
    model, example = _reference(version, tmp_path)
    rows = choose_rows(version, model, example)
    assert rows.kind == "dataset"
    assert rows.source == f"sample of the logged dataset 'train' ({len(rows.frame)} of its rows)"
    frame = rows.frame
    assert len(frame) == 1000 and list(frame.columns) == list(example.columns)
    # real rows: every one of them is a row of the logged frame, and every category is among them
    found = frame.merge(X.drop_duplicates(), how="left", on=list(frame.columns), indicator=True)["_merge"]
    assert (found == "both").all()
    assert set(frame["city"]) == set(X["city"]) and set(frame["plan"]) == set(X["plan"])
    assert frame["seats"].min() == X["seats"].min() and frame["seats"].max() == X["seats"].max()
    assert len(model.predict(frame)) == len(frame)
    assert choose_rows(version, model, example).frame.equals(frame)


def test_a_dataset_logged_without_rows_gives_a_sample_drawn_from_its_profile(
    workspace: Any, data_module: Any, tmp_path: Path
) -> None:
    from shipyard.deploy.parity import MIN_HOLDOUT_ROWS, choose_rows

    version, X = _run_with(workspace, data_module, "pricing-dataset", log_dataset=True, sample_rows=0)
    model, example = _reference(version, tmp_path)
    rows = choose_rows(version, model, example)
    assert rows.kind == "dataset"
    assert rows.source == f"sample of the logged dataset 'train' ({len(rows.frame)} rows drawn from its profile)"
    frame = rows.frame
    assert len(frame) >= MIN_HOLDOUT_ROWS and list(frame.columns) == list(example.columns)
    assert set(frame["city"]) == set(X["city"]) and set(frame["plan"]) == set(X["plan"])
    assert frame["seats"].min() == X["seats"].min() and frame["seats"].max() == X["seats"].max()
    assert frame["seats"].dtype == X["seats"].dtype and frame["income"].isna().sum() == 1
    assert len(model.predict(frame)) == len(frame)  # rows the model scores as it scores real ones
    again = choose_rows(version, model, example)
    assert again.frame.equals(frame)


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_served_image_agrees_on_rows_drawn_from_a_logged_dataset(
    workspace: Any, data_module: Any, docker_engine: Any, base_image: Any  # noqa: F811
) -> None:
    version, _ = _run_with(workspace, data_module, "pricing-served", log_dataset=True)
    promotion = shipyard.promote(f"{version.name}/{version.version}")
    assert promotion.status == "completed"
    parity = shipyard.gates.load_report(f"{version.name}/{version.version}")["parity"]
    assert parity.status == "pass", parity.message
    assert "(sample of the logged dataset 'train' (" in parity.message
    state = json.loads(Path(promotion.state_file).read_text())
    assert state["stages"]["smoke"]["outputs"]["rows_source"].startswith("sample of the logged dataset 'train'")


def test_a_run_with_only_an_input_example_says_so(workspace: Any, data_module: Any, tmp_path: Path) -> None:
    from shipyard.deploy.parity import choose_rows

    version, _ = _run_with(workspace, data_module, "pricing-example", log_dataset=False)
    model, example = _reference(version, tmp_path)
    rows = choose_rows(version, model, example)
    assert rows.kind == "input_example"
    assert rows.source.startswith("input example only (")
