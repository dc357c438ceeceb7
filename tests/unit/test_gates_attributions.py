"""Feature attributions and the attribution gate, with small real scikit-learn models.

The gate tests go through the check's own path (``AtGateTime`` on an
``EvalContext``, ``_run_gates``); one test records a check on the embedded
MLflow store and reads the attributions back.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from shipyard._core.errors import GateError, MissingDependency
from shipyard.gates import attribution, spec_from_dict, spec_to_dict
from shipyard.gates._attributions import AtGateTime, Attributions, compute, default_scoring
from shipyard.gates._check import _run_gates
from shipyard.gates._evaluate import EvalContext, Subject


def _data(n: int = 300, *, on_group: bool = False, seed: int = 0) -> pd.DataFrame:
    """x0..x2 numeric, 'group' a text column; the target follows x0 (and, with on_group, mostly group)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x0": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "group": rng.choice(["a", "b"], size=n),
        }
    )
    signal = frame["x0"] + 0.8 * frame["x1"] + 0.6 * frame["x2"]
    if on_group:
        signal = 0.3 * frame["x0"] + np.where(frame["group"] == "a", 2.0, -2.0)
    frame["target"] = (signal > 0).astype(int)
    return frame


def _pipeline(columns: list[str]):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    numeric = [c for c in columns if c != "group"]
    parts = [("num", SimpleImputer(), numeric)]
    if "group" in columns:
        parts.append(("cat", OneHotEncoder(handle_unknown="ignore"), ["group"]))
    return make_pipeline(ColumnTransformer(parts), LogisticRegression())


def _ctx(workspace, model, columns, holdout, specs) -> EvalContext:
    subject = Subject("candidate", lambda frame: model.predict(frame), list(columns), {"model_uri": "x"})
    ctx = EvalContext(subject, {}, "r" * 32, holdout=holdout, target="target", datasets={"holdout": holdout})
    ctx.exclude = ("target",)
    ctx.attributions = AtGateTime(workspace, ctx, [])
    return ctx


def test_equals_scikit_learns_permutation_importance_for_the_same_seed() -> None:
    from sklearn.inspection import permutation_importance

    frame = _data(400)
    columns = ["x0", "x1", "x2", "group"]
    model = _pipeline(columns).fit(frame[columns], frame["target"])
    ours = compute(model, frame[columns], frame["target"], scoring="balanced_accuracy", seed=7, n_repeats=4,
                   max_rows=250, max_seconds=None)
    rows = np.sort(np.random.default_rng(7).choice(400, 250, replace=False))  # the documented sample
    theirs = permutation_importance(model, frame[columns].iloc[rows].reset_index(drop=True),
                                    frame["target"].to_numpy()[rows], scoring="balanced_accuracy", n_repeats=4,
                                    random_state=7)
    assert (ours.rows, ours.n_repeats, ours.seed, list(ours.features)) == (250, 4, 7, columns)
    for i, column in enumerate(columns):
        assert ours.features[column][0] == pytest.approx(theirs.importances_mean[i], abs=1e-12)
        assert ours.features[column][1] == pytest.approx(theirs.importances_std[i], abs=1e-12)
    assert Attributions.from_dict(ours.to_dict()) == ours


def test_a_pipeline_with_a_text_category_and_missing_values_through_a_predict_function() -> None:
    frame = _data(300, on_group=True)
    columns = ["x0", "x1", "x2", "group"]
    model = _pipeline(columns).fit(frame[columns], frame["target"])
    holdout = frame[columns].copy()
    holdout.loc[::7, "x1"] = np.nan
    found = compute(lambda X: model.predict(X), holdout, frame["target"], scoring="accuracy")
    assert found.ranked()[0] == "group" and found.share()["group"] > 0.6
    assert sum(found.share().values()) == pytest.approx(1.0)
    assert default_scoring(frame["target"]) == "accuracy" and default_scoring([0.1, 2.5, 3.3]) == "r2"
    assert default_scoring(frame["target"], ["val/f1"]) == "f1"
    with pytest.raises(GateError, match="not a scikit-learn scorer"):
        compute(model, holdout, frame["target"], scoring="acuracy")


def test_the_gate_blocks_a_model_that_relies_on_a_protected_column_and_passes_one_that_does_not(workspace) -> None:
    train, holdout = _data(400, on_group=True, seed=1), _data(300, on_group=True, seed=2)
    gate = attribution(protected=["group"], top_k=2)
    assert spec_from_dict(spec_to_dict(gate)) == gate and gate.max_share is None
    relies = ["x0", "x1", "x2", "group"]
    model = _pipeline(relies).fit(train[relies], train["target"])
    [blocked], _ = _run_gates([gate], _ctx(workspace, model, relies, holdout, [gate]))
    assert blocked.status == "fail" and blocked.value == 1.0
    assert "protected column 'group' ranks 1 of 4" in blocked.message and "within the top 2" in blocked.message
    fair = ["x0", "x1", "x2"]
    model = _pipeline(fair).fit(train[fair], train["target"])
    [passed], _ = _run_gates([gate], _ctx(workspace, model, fair, holdout, [gate]))
    assert passed.status == "pass" and "'group' is not a model input" in passed.message


def test_max_share(workspace) -> None:
    spread, one = _data(300, seed=3), _data(300, seed=3)
    one["target"] = (one["x0"] > 0).astype(int)
    columns = ["x0", "x1", "x2"]
    results = {}
    for name, frame in (("spread", spread), ("one", one)):
        model = _pipeline(columns).fit(frame[columns], frame["target"])
        [results[name]], _ = _run_gates([attribution()], _ctx(workspace, model, columns, frame, []))
    assert results["spread"].status == "pass" and results["spread"].value < 0.6
    assert results["one"].status == "fail" and results["one"].value > 0.6
    assert "feature 'x0' holds" in results["one"].message and "above 60%" in results["one"].message


def test_a_model_that_fails_on_permuted_rows_gives_an_error_result_not_an_exception(workspace) -> None:
    holdout = _data(100).sort_values("x0").reset_index(drop=True)

    class OnlySorted:
        def predict(self, frame):
            if not frame["x0"].is_monotonic_increasing:
                raise ValueError("x0 must arrive sorted")
            return (frame["x0"] > 0).astype(int).to_numpy()

    ctx = _ctx(workspace, OnlySorted(), ["x0", "x1"], holdout, [])
    [result], _ = _run_gates([attribution(0.9)], ctx)
    assert result.status == "error" and "x0 must arrive sorted" in result.message
    assert ctx.attributions.value.error and ctx.attributions.value.features == {}


def test_the_time_budget_lowers_repeats_then_rows() -> None:
    frame = _data(200)
    calls = []

    def slow(X):
        calls.append(len(X))
        time.sleep(0.04)
        return (X["x0"] > 0).astype(int).to_numpy()

    columns = ["x0", "x1", "x2", "group"]
    started = time.perf_counter()
    fewer_repeats = compute(slow, frame[columns], frame["target"], scoring="accuracy", n_repeats=5, max_seconds=0.4)
    # one predict takes about 0.04 s: 4 features × 5 repeats would take 0.8 s, so about 2 repeats fit
    assert 1 <= fewer_repeats.n_repeats < 5 and fewer_repeats.rows == 200
    assert "n_repeats lowered from 5" in fewer_repeats.notes[0]
    calls.clear()
    fewer_rows = compute(slow, frame[columns], frame["target"], scoring="accuracy", n_repeats=5, max_seconds=0.08)
    # not even one repeat fits: rows are cut in proportion (to about 100, never under 50)
    assert fewer_rows.n_repeats == 1 and 50 <= fewer_rows.rows <= 100 and len(calls) == 1 + 1 + 4
    assert "rows lowered from 200" in fewer_rows.notes[1]
    assert time.perf_counter() - started < 2.0


def test_shap_without_the_package_names_the_extra() -> None:
    try:
        import shap  # noqa: F401
    except ImportError:
        frame = _data(60)
        with pytest.raises(MissingDependency, match=r"shipyard\[shap\]"):
            compute(lambda X: X["x0"] > 0, frame[["x0"]], frame["target"], scoring="accuracy", method="shap")
    else:
        pytest.skip("shap is installed here")


def test_a_recorded_check_stores_attributions_that_load_reads_back(workspace, mlflow_client) -> None:
    import shipyard
    from shipyard.gates import check, load_attributions, threshold

    frame = _data(300, seed=4)
    columns = ["x0", "x1", "x2", "group"]
    model = _pipeline(columns).fit(frame[columns], frame["target"])
    with shipyard.start_run("attributions") as run:
        shipyard.log_model(model, name="model", input_example=frame[columns].iloc[:3])
    assert load_attributions(run.run_id, workspace=workspace) is None
    report = check(run.run_id, [threshold("accuracy >= 0.5"), attribution(0.9)], frame, workspace=workspace)
    assert report.verdict == "pass" and report.attributions is not None
    stored = load_attributions(run.run_id, workspace=workspace)
    assert stored is not None and stored.to_dict() == report.attributions
    assert stored.scoring == "accuracy" and stored.ranked()[0] == "x0" and set(stored.features) == set(columns)
    assert "Feature attributions" in report.to_html()
    artifacts = {a.path for a in mlflow_client.list_artifacts(run.run_id, "shipyard")}
    assert {"shipyard/attributions.json", "shipyard/attributions.png"} <= artifacts
