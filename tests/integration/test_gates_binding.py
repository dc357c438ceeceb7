"""A failed gate stays failed: a real Metaflow flow, a real MLflow store, the real CLI in a subprocess.

The flow declares a blocking gate its model fails. A later, more lenient
check of the same run must not make it promotable; only an override with a
reason, given through ``shipyard gates override``, does, and that override is
then in the report, the tags and the audit log.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import shipyard
from shipyard._core import audit
from shipyard._core.errors import GateFailed
from shipyard.gates import GateReport, load_report

from tests.conftest import outside_env

MODEL = "diabetes-gated"

FLOW_SOURCE = '''
"""A regression flow whose declared gate its model fails (Ridge on diabetes has an RMSE near 54)."""

from metaflow import FlowSpec, step

import shipyard
from shipyard.gates import threshold


@shipyard.track
class StrictFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.train)

    @shipyard.gate(threshold("rmse <= 40", source="holdout"), threshold("train_r2 >= 0.3"), model_name="%s")
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
    StrictFlow()
''' % MODEL


LENIENT_CHECK = """
import json, sys
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
import shipyard
from shipyard.gates import threshold

X, y = load_diabetes(return_X_y=True, as_frame=True)
_, X_test, _, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
report = shipyard.check(sys.argv[1], gates=[threshold("rmse <= 1000", source="holdout")],
                        holdout=X_test.assign(target=y_test.to_numpy()))
print(json.dumps(report.to_dict()))
"""


def _python(project: Path, *args: str, author: str = "grace") -> subprocess.CompletedProcess[str]:
    env = outside_env()
    env.update(SHIPYARD_PROJECT_DIR=str(project), SHIPYARD_AUTHOR=author)
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=project, capture_output=True, text=True, timeout=300
    )


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _python(project, "-m", "shipyard.cli", "gates", *args)


class _StopBeforeBento(Exception):
    """Ends the promotion once the gates and register stages are done; images are the e2e suite's job."""


def _stop_before_bento(event) -> None:
    if event.stage == "bento" and event.state == "started":
        raise _StopBeforeBento


def test_a_lenient_recheck_cannot_lift_a_failed_flow_gate_only_a_recorded_override_can(
    workspace, project, mlflow_client, tmp_path
):
    flow = project / "strict_flow.py"
    flow.write_text(FLOW_SOURCE)
    result = shipyard.run(flow)
    run_id = result.mlflow_run_id
    assert result.status == "FINISHED"
    assert result.tags["shipyard.gate.threshold.rmse"] == "fail"
    assert result.tags["shipyard.gate.verdict"] == "fail"

    # the bug this guards against: this check, from a notebook, used to replace the flow's report with a `pass`
    checked = _python(project, "-c", LENIENT_CHECK, run_id, author="ada")
    assert checked.returncode == 0, checked.stderr
    lenient = GateReport.from_dict(json.loads(checked.stdout.strip().splitlines()[-1]))
    assert lenient.verdict == "fail", lenient.summary()
    strict = lenient["threshold.rmse"]
    assert strict.status == "fail" and "fails rmse <= 40" in strict.message
    assert any("different gate under that name (rmse <= 1000, pass)" in n for n in lenient.notes), lenient.notes
    assert lenient["threshold.train_r2"].status == "pass"  # carried from the flow's check
    # the lenient check got a report of its own, which says `pass` for its own gate
    verdicts = [r for r in audit.read(event="gate.verdict") if r["run_id"] == run_id]
    assert [v["verdict"] for v in verdicts] == ["fail", "fail"]
    assert verdicts[-1]["check_verdict"] == "pass"
    own_path = verdicts[-1]["check"].split(f"{run_id}/", 1)[1]
    own = json.loads(Path(mlflow_client.download_artifacts(run_id, own_path, str(tmp_path))).read_text())
    assert own["verdict"] == "pass" and [r["name"] for r in own["results"]] == ["threshold.rmse"]
    assert mlflow_client.get_run(run_id).data.tags["shipyard.gate.verdict"] == "fail"

    with pytest.raises(GateFailed, match="threshold.rmse") as err:
        shipyard.promote(result, model_name=MODEL)
    assert "shipyard gates override" in str(err.value)
    assert mlflow_client.search_registered_models(filter_string=f"name = '{MODEL}'") == []

    # CI re-evaluates the binding report: the flow's failing gate, not the lenient one
    ci = _cli(project, "check", run_id, "--json")
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert json.loads(ci.stdout)["verdict"] == "fail"

    refused = _cli(project, "override", run_id, "--gate", "threshold.rmse")
    assert refused.returncode == 2 and "no written reason" in refused.stderr, refused.stderr
    assert load_report(run_id).verdict == "fail"
    assert any(r["run_id"] == run_id for r in audit.read(event="gate.override_refused"))

    why = "RMSE target is being revised to 60 in RFC-12; ship the baseline meanwhile"
    done = _cli(project, "override", run_id, "--gate", "threshold.rmse", "--reason", why)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "override of threshold.rmse by grace" in done.stdout

    report = load_report(run_id)
    assert report.verdict == "overridden" and report["threshold.rmse"].status == "overridden"
    assert report.override["by"] == "grace" and report.override["reason"] == why and report.override["at"]
    tags = mlflow_client.get_run(run_id).data.tags
    assert tags["shipyard.gate.override.by"] == "grace"
    assert tags["shipyard.gate.override.reason"] == why
    assert tags["shipyard.gate.override.gates"] == "threshold.rmse"
    assert tags["shipyard.gate.threshold.rmse"] == "overridden" and tags["shipyard.gate.verdict"] == "overridden"
    logged = [r for r in audit.read(event="gate.override") if r["run_id"] == run_id]
    assert len(logged) == 1
    assert logged[0]["who"] == "grace" and logged[0]["reason"] == why and logged[0]["gates"] == ["threshold.rmse"]

    with pytest.raises(_StopBeforeBento):
        shipyard.promote(result, model_name=MODEL, progress=_stop_before_bento)
    versions = mlflow_client.search_model_versions(f"name = '{MODEL}'")
    assert [v.run_id for v in versions] == [run_id]
    version = versions[0]
    assert mlflow_client.get_registered_model(MODEL).aliases == {"challenger": version.version}
    assert version.tags["shipyard.gate.verdict"] == "overridden"
    assert version.tags["shipyard.gate.override.by"] == "grace"
    state = json.loads(next(workspace.promotions_dir.rglob("*.json")).read_text())
    assert state["stages"]["gates"]["status"] == "done"
    assert state["stages"]["gates"]["outputs"]["verdict"] == "overridden"
