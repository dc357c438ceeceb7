"""Gates on imperfect data: NaNs, unseen categories and out-of-range values still give a full, recorded report.

A scikit-learn pipeline with string categories and no imputer is logged to a
real MLflow store, then checked on a holdout that holds every kind of
problem at once. Data gates must name each problem; model gates, which cannot
score such rows, must say why (status ``error``, blocking); and the report
must be recorded and re-checkable.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import shipyard
from shipyard import registry
from shipyard._core import audit
from shipyard.gates import champion_challenger, custom, data_contract, recheck, slice_parity, threshold

MODEL = "churn-imperfect"
PLANS = ["free", "pro", "team"]


def _frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, rows),
            "income": rng.lognormal(10, 0.5, rows),
            "plan": pd.Series(rng.choice(PLANS, rows), dtype="object"),
            "visits": rng.integers(0, 50, rows),
        }
    )
    score = (frame["income"] > frame["income"].median()).astype(int) + (frame["plan"] == "team")
    frame["target"] = (score + rng.integers(0, 2, rows) > 1).astype(int)
    return frame


@pytest.fixture
def logged(workspace):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train = _frame(1500, 0)
    features = train.drop(columns="target")
    model = make_pipeline(
        ColumnTransformer(
            [
                ("plan", OneHotEncoder(handle_unknown="error"), ["plan"]),
                ("num", StandardScaler(), ["age", "income", "visits"]),
            ]
        ),
        LogisticRegression(max_iter=500),
    ).fit(features, train["target"])
    with shipyard.start_run("imperfect") as run:
        shipyard.log_dataset(train, name="train")
        shipyard.log_model(model, name="model", input_example=features.iloc[:5])
    return registry.register(MODEL, run.run_id), run.run_id


def _imperfect_holdout() -> pd.DataFrame:
    holdout = _frame(400, 1)
    holdout.loc[[3, 50, 120, 200, 333], "age"] = np.nan  # five NaN values in one column
    holdout.loc[[7, 8], "plan"] = "enterprise"  # a category the model never saw
    holdout.loc[[11, 12, 13], "income"] = 1e12  # far outside the training range
    return holdout


def test_a_holdout_with_nans_unseen_categories_and_outliers_gives_a_complete_recorded_report(
    logged, mlflow_client, tmp_path
):
    version, train_run = logged
    holdout = _imperfect_holdout()
    gates = [
        data_contract(reference=(train_run, "train"), range_slack=0.5),
        threshold("accuracy >= 0.6", source="holdout"),
        champion_challenger("accuracy", model_name=MODEL),
        slice_parity("plan", "accuracy", max_gap=0.3, min_rows=5),
        custom(lambda ctx: float((ctx.predict() == ctx.y).mean()), bound=0.5, name="custom.agreement"),
        threshold("rmse <= 10", source="holdout", blocking=False, name="rmse.advisory"),
    ]
    report = shipyard.check(str(version), gates, holdout)

    assert [r.name for r in report.results] == [
        "contract.holdout",
        "threshold.accuracy",
        "champion_challenger",
        "slice.plan",
        "custom.agreement",
        "rmse.advisory",
    ]
    assert report.verdict == "fail"

    contract = report["contract.holdout"]
    assert contract.status == "fail"
    found = {(v["check"], v["column"]) for v in contract.details["violations"]}
    assert {("nulls", "age"), ("categories", "plan"), ("range", "income")} <= found, found
    assert "age: null rate 1.2% exceeds the allowed 0.0%" in contract.message
    assert "plan: unseen category 'enterprise'" in contract.message
    assert "income: 3 value(s) outside" in contract.message

    for name in ("threshold.accuracy", "champion_challenger", "slice.plan", "custom.agreement"):
        result = report[name]
        assert result.status == "error" and result.blocking and result.blocks, (name, result)
        assert "cannot" in result.message and f"{MODEL}/{version.version}" in result.message, result.message
        assert "ValueError" in result.message, result.message
        assert "unknown categor" in result.message.lower() or "nan" in result.message.lower(), result.message
    assert report["threshold.accuracy"].details["hint"]
    advisory = report["rmse.advisory"]
    assert advisory.status == "error" and not advisory.blocks  # could not score, and blocks nothing

    # recorded like any report: artifacts, tags on run and version, audit log
    stored = json.loads(
        Path(mlflow_client.download_artifacts(version.run_id, "shipyard/gates/report.json", str(tmp_path))).read_text()
    )
    assert stored["verdict"] == "fail" and len(stored["results"]) == 6
    tags = registry.resolve(str(version)).tags
    assert tags["shipyard.gate.contract.holdout"] == "fail"
    assert tags["shipyard.gate.threshold.accuracy"] == "error"
    assert tags["shipyard.gate.verdict"] == "fail"
    assert [r["verdict"] for r in audit.read(event="gate.verdict") if r["run_id"] == version.run_id] == ["fail"]

    # the stored holdout (NaNs and all) re-checks to the same statuses
    again = recheck(str(version))
    assert {r.name: r.status for r in again.results} == {r.name: r.status for r in report.results}


def test_a_model_that_cannot_score_is_named_with_the_cause_once_per_holdout(logged):
    version, _ = logged
    clean = _frame(300, 2)
    unlabelled = clean.copy()
    unlabelled.loc[[1, 2], "target"] = np.nan
    report = shipyard.check(str(version), [threshold("accuracy >= 0.6", source="holdout")], unlabelled, record=False)
    result = report["threshold.accuracy"]
    assert result.status == "error"
    assert "the target column 'target' has 2 missing value(s) of 300 (rows 1, 2)" in result.message
    assert "Drop the unlabelled rows" in result.details["hint"]

    scored = shipyard.check(str(version), [threshold("accuracy >= 0.6", source="holdout")], clean, record=False)
    assert scored["threshold.accuracy"].status == "pass"
