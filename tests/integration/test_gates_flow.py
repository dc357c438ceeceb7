"""``@shipyard.gate`` on a step of a real Metaflow flow, recorded in a real MLflow store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import shipyard
from shipyard._core import audit

from tests.conftest import outside_env

FLOW_SOURCE = '''
"""A regression flow whose train step is gated."""

from metaflow import FlowSpec, step

import shipyard
from shipyard.gates import custom, data_contract, threshold


def label_service_agrees(ctx):
    raise RuntimeError("label service timed out")


@shipyard.track
class GatedFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.train)

    @shipyard.gate(
        threshold("rmse <= 75", source="holdout"),
        threshold("train_r2 >= 0.3"),
        custom(label_service_agrees),
        data_contract({"bmi": {"dtype": "float64", "max_null_rate": 0.0}, "target": {"min": 0}}),
        model_name="diabetes",
    )
    @step
    def train(self):
        from sklearn.datasets import load_diabetes
        from sklearn.linear_model import Ridge
        from sklearn.model_selection import train_test_split

        X, y = load_diabetes(return_X_y=True, as_frame=True)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
        model = Ridge(alpha=0.1).fit(X_train, y_train)
        shipyard.log_model(model, name="model", input_example=X_train.iloc[:3])
        shipyard.log_metric("train_r2", model.score(X_train, y_train))
        self.holdout = X_test.assign(target=y_test.to_numpy())
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    GatedFlow()
'''


def test_gate_decorator_evaluates_at_step_end_and_a_raising_gate_does_not_crash_the_flow(workspace, tmp_path):
    from mlflow.tracking import MlflowClient

    flow = tmp_path / "gated_flow.py"
    flow.write_text(FLOW_SOURCE)
    result = shipyard.run(flow)
    assert result.status == "FINISHED"

    tags = result.tags
    assert tags["shipyard.gate.threshold.rmse"] == "pass"
    assert tags["shipyard.gate.threshold.train_r2"] == "pass"
    assert tags["shipyard.gate.contract.holdout"] == "pass"
    assert tags["shipyard.gate.custom.label_service_agrees"] == "error"
    assert tags["shipyard.gate.verdict"] == "fail"

    client = MlflowClient(tracking_uri=workspace.tracking_uri)
    local = client.download_artifacts(result.mlflow_run_id, "shipyard/gates/report.json", str(tmp_path))
    report = json.loads(Path(local).read_text())
    by_name = {r["name"]: r for r in report["results"]}
    assert "RuntimeError: label service timed out" in by_name["custom.label_service_agrees"]["message"]
    assert by_name["threshold.rmse"]["value"] <= 75
    assert report["data"]["holdout"] == f"shipyard/gates/checks/{report['check_id']}/data/holdout.parquet"
    assert all(s["check"] == report["check_id"] for s in report["specs"])
    assert [s["kind"] for s in report["specs"]] == ["threshold", "threshold", "custom", "data_contract"]

    verdicts = [r for r in audit.read(event="gate.verdict") if r["run_id"] == result.mlflow_run_id]
    assert len(verdicts) == 1 and verdicts[0]["verdict"] == "fail"

    # the recorded gates, custom function included, re-run by the CI command with the same verdict
    env = outside_env()
    env["SHIPYARD_PROJECT_DIR"] = str(workspace.project_dir)
    ci = subprocess.run(
        [sys.executable, "-m", "shipyard.cli", "gates", "check", result.mlflow_run_id, "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ci.returncode == 1, ci.stdout + ci.stderr
    again = json.loads(ci.stdout)
    assert again["verdict"] == "fail"
    assert {r["name"]: r["status"] for r in again["results"]} == {n: r["status"] for n, r in by_name.items()}
