"""Quality gates against a real MLflow sqlite store, with real scikit-learn models.

One workspace per module: the models are trained and logged once, then each
test checks one acceptance point of the gates against them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import shipyard
from shipyard import registry
from shipyard._core import audit
from shipyard._core.errors import GateError, GateFailed, OverrideRefused
from shipyard._core.workspace import reset_workspace
from shipyard.gates import (
    Column,
    GateResult,
    attach_results,
    champion_challenger,
    check,
    custom,
    data_contract,
    recheck,
    slice_parity,
    threshold,
)

MODEL = "breast-cancer"
SDK = Path(__file__).resolve().parents[2] / "sdk"


def _train(pipeline, X, y, *, extra_metrics=None, train_frame=None):
    from sklearn.base import clone

    model = clone(pipeline).fit(X, y)
    with shipyard.start_run("gates-it") as run:
        if train_frame is not None:
            shipyard.log_dataset(train_frame, name="train")
        shipyard.log_model(model, name="model", input_example=X.iloc[:3])
        shipyard.log_metric("train_accuracy", float(model.score(X, y)))
        for k, v in (extra_metrics or {}).items():
            shipyard.log_metric(k, v)
    return run.run_id


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A workspace with: v1 mediocre (champion, then previous), v2 good (champion), v3 worse, v4 equal to v2."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    mp = pytest.MonkeyPatch()
    project = tmp_path_factory.mktemp("gates-project")
    mp.setenv("SHIPYARD_PROJECT_DIR", str(project))
    mp.setenv("SHIPYARD_AUTHOR", "ada")
    reset_workspace()
    ws = shipyard.init(project_dir=project)
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    holdout = X_test.assign(target=y_test.to_numpy()).reset_index(drop=True)
    good = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    mediocre = make_pipeline(StandardScaler(), LogisticRegression(C=0.002))
    worse = make_pipeline(StandardScaler(), LogisticRegression(C=0.0003))
    train_frame = X_train.assign(target=y_train.to_numpy())

    r1 = _train(mediocre, X_train, y_train, train_frame=train_frame)
    v1 = registry.register(MODEL, r1)
    gates = [champion_challenger("accuracy", tolerance=0.01), threshold("accuracy >= 0.6")]
    first = check(str(v1), gates, holdout)
    registry.swap_champion(MODEL, v1.version, reason="first model")
    r2 = _train(good, X_train, y_train)
    v2 = registry.register(MODEL, r2)
    better = check(str(v2), gates, holdout)
    registry.swap_champion(MODEL, v2.version, reason="better on the holdout")
    r3 = _train(worse, X_train, y_train)
    v3 = registry.register(MODEL, r3)
    r4 = _train(good, X_train, y_train)
    v4 = registry.register(MODEL, r4, alias=None)
    yield {
        "ws": ws,
        "holdout": holdout,
        "train_run": r1,
        "v1": v1,
        "v2": v2,
        "v3": v3,
        "v4": v4,
        "first": first,
        "better": better,
        "gates": gates,
        "project": project,
    }
    reset_workspace()
    mp.undo()


@pytest.fixture(autouse=True)
def _in_world(_isolated_settings, world, monkeypatch):
    """Every test acts in the module's workspace (the shared fixtures isolate each test's settings)."""
    monkeypatch.setenv("SHIPYARD_PROJECT_DIR", str(world["project"]))
    monkeypatch.setenv("SHIPYARD_AUTHOR", "ada")
    reset_workspace()
    shipyard.init(project_dir=world["project"])


def _client(ws):
    from shipyard.tracking._client import client_for

    return client_for(ws)


def test_first_model_passes_with_a_recorded_note(world):
    report = world["first"]
    assert report.verdict == "pass"
    cc = report["champion_challenger"]
    assert cc.status == "pass" and "first model passes" in cc.message
    assert any("no champion" in n for n in report.notes)
    stored = json.loads(Path(_download(world, world["v1"].run_id, "shipyard/gates/report.json")).read_text())
    assert any("no champion" in n for n in stored["notes"])


def test_better_challenger_passes_against_the_champion_on_the_same_holdout(world):
    report = world["better"]
    assert report.verdict == "pass", report.summary()
    details = report["champion_challenger"].details["metrics"]["accuracy"]
    assert details["candidate"] > details["champion"]
    assert report.champion["version"] == world["v1"].version


def test_worse_challenger_is_blocked_with_metric_values_and_tolerance(world):
    report = check(str(world["v3"]), world["gates"], world["holdout"])
    assert report.verdict == "fail"
    cc = report["champion_challenger"]
    metrics = cc.details["metrics"]["accuracy"]
    assert metrics["candidate"] < metrics["champion"] - 0.01
    msg = cc.message
    assert "accuracy" in msg and f"{metrics['candidate']:.4g}" in msg and f"{metrics['champion']:.4g}" in msg
    assert "tolerance 0.01" in msg and f"{MODEL}/{world['v2'].version}" in msg
    with pytest.raises(GateFailed) as err:
        report.raise_for_verdict()
    assert err.value.report is report
    tags = registry.resolve(str(world["v3"])).tags
    assert tags["shipyard.gate.verdict"] == "fail" and tags["shipyard.gate.champion_challenger"] == "fail"
    with pytest.raises(GateFailed):
        registry.swap_champion(MODEL, world["v3"].version, reason="try anyway")
    assert registry.champion(MODEL).version == world["v2"].version


def test_equal_to_champion_within_tolerance_passes(world):
    report = check(str(world["v4"]), [champion_challenger("accuracy", tolerance=0.0)], world["holdout"])
    m = report["champion_challenger"].details["metrics"]["accuracy"]
    assert m["candidate"] == pytest.approx(m["champion"])
    assert report.verdict == "pass", report.summary()
    demanding = check(
        str(world["v4"]), [champion_challenger("accuracy", min_improvement=0.01)], world["holdout"], record=False
    )
    assert demanding.verdict == "fail"
    assert "minimum improvement 0.01" in demanding["champion_challenger"].message


def test_regression_direction_lower_is_better_for_rmse(world):
    # a threshold computed on the holdout (not logged) with a lower-is-better metric
    report = check(world["v2"], [threshold("mse <= 0.1", source="holdout")], world["holdout"], record=False)
    assert report["threshold.mse"].status == "pass"
    assert "on 171 holdout rows" in report["threshold.mse"].message


def _contract_holdout(world):
    frame = world["holdout"].copy()
    frame["site"] = np.where(np.arange(len(frame)) % 2 == 0, "north", "south")
    return frame


CONTRACT = data_contract(
    {
        "mean radius": {"dtype": "float64", "min": 0.0, "max": 40.0, "max_null_rate": 0.0},
        "mean texture": {"dtype": "float64", "max_null_rate": 0.05},
        "site": {"dtype": "string", "categories": ["north", "south"]},
    }
)


def _violations(report, check_name):
    return [v for v in report["contract.holdout"].details["violations"] if v["check"] == check_name]


def test_data_contract_passes_on_clean_data(world):
    report = check(world["v2"], [CONTRACT], _contract_holdout(world), record=False)
    assert report.verdict == "pass", report.summary()


def test_data_contract_detects_wrong_dtype(world):
    frame = _contract_holdout(world)
    frame["mean radius"] = frame["mean radius"].astype("str")
    report = check(world["v2"], [CONTRACT], frame, record=False)
    assert report.verdict == "fail"
    assert [v["column"] for v in _violations(report, "dtype")] == ["mean radius"]
    assert "mean radius: dtype str, expected float64" in report["contract.holdout"].message


def test_data_contract_detects_out_of_range_values(world):
    frame = _contract_holdout(world)
    frame.loc[:4, "mean radius"] = 400.0
    report = check(world["v2"], [CONTRACT], frame, record=False)
    assert [v["column"] for v in _violations(report, "range")] == ["mean radius"]
    assert "5 value(s) outside [0, 40]" in report["contract.holdout"].message


def test_data_contract_detects_unseen_category(world):
    frame = _contract_holdout(world)
    frame.loc[3, "site"] = "east"
    report = check(world["v2"], [CONTRACT], frame, record=False)
    assert [v["column"] for v in _violations(report, "categories")] == ["site"]
    assert "'east'" in report["contract.holdout"].message


def test_data_contract_detects_excess_nulls(world):
    frame = _contract_holdout(world)
    frame.loc[: len(frame) // 5, "mean texture"] = np.nan
    report = check(world["v2"], [CONTRACT], frame, record=False)
    assert [v["column"] for v in _violations(report, "nulls")] == ["mean texture"]
    assert "null rate" in report["contract.holdout"].message


def test_data_contract_from_a_reference_profile_of_a_previous_run(world):
    contract = data_contract(reference=(world["train_run"], "train"), range_slack=0.5, null_tolerance=0.0)
    clean = check(world["v2"], [contract], world["holdout"], record=False)
    assert clean.verdict == "pass", clean.summary()
    broken = world["holdout"].copy()
    broken["mean area"] = broken["mean area"].astype("float32")
    broken.loc[:2, "worst area"] = 1e7
    broken.loc[:30, "mean smoothness"] = np.nan
    broken = broken.drop(columns=["symmetry error"])
    report = check(world["v2"], [contract], broken, record=False)
    found = {(v["check"], v["column"]) for v in report["contract.holdout"].details["violations"]}
    assert {
        ("dtype", "mean area"),
        ("range", "worst area"),
        ("nulls", "mean smoothness"),
        ("columns", "symmetry error"),
    } <= found


def test_slice_gap_is_detected_and_reported_per_group(world):
    gate = slice_parity("mean radius", "accuracy", max_gap=0.05, min_rows=10)
    report = check(str(world["v3"]), [gate], world["holdout"], record=False)
    result = report["slice.mean radius"]
    groups = result.details["groups"]
    assert len(groups) == 4 and sum(g["rows"] for g in groups.values()) == len(world["holdout"])
    values = [g["value"] for g in groups.values()]
    assert result.value == pytest.approx(max(values) - min(values))
    assert result.status == "fail" and result.value > 0.05
    for name, g in groups.items():
        assert f"{name}={g['value']:.4g} (n={g['rows']})" in result.message
    warn_only = check(
        str(world["v3"]), [slice_parity("mean radius", max_gap=0.05, blocking=False)], world["holdout"], record=False
    )
    assert warn_only.verdict == "pass" and warn_only["slice.mean radius"].status == "warn"


def test_custom_gate_that_raises_is_reported_as_an_error_with_its_exception(world):
    def explodes(ctx):
        raise ValueError("feature store unreachable")

    def enough_rows(ctx):
        return len(ctx.holdout), "holdout rows"

    report = check(
        world["v4"],
        [
            custom(explodes),
            custom(enough_rows, bound=100),
            custom(lambda ctx: bool((ctx.predict() == ctx.y).mean() > 0.9), name="custom.agree"),
        ],
        world["holdout"],
    )
    failed = report["custom.explodes"]
    assert failed.status == "error" and failed.blocks and report.verdict == "fail"
    assert "ValueError: feature store unreachable" in failed.message
    assert "feature store unreachable" in failed.details["traceback"]
    assert report["custom.enough_rows"].status == "pass" and report["custom.enough_rows"].value == 171
    assert report["custom.agree"].status == "pass"
    assert _client(world["ws"]).get_run(world["v4"].run_id).data.tags["shipyard.gate.custom.explodes"] == "error"


def test_override_without_reason_is_refused(world):
    for reason in (None, "   "):
        with pytest.raises(OverrideRefused) as err:
            check(str(world["v3"]), world["gates"], world["holdout"], override="champion_challenger", reason=reason)
        assert "no written reason" in str(err.value)
        assert err.value.report.verdict == "fail"
    assert any(r["version"] == world["v3"].version for r in audit.read(event="gate.override_refused"))
    assert registry.resolve(str(world["v3"])).tags["shipyard.gate.verdict"] == "fail"


def test_override_with_reason_is_recorded_in_report_tags_and_audit_log(world):
    why = "holdout drifted; the old champion is known to be over-fit"
    report = check(str(world["v3"]), world["gates"], world["holdout"], override=["champion_challenger"], reason=why)
    assert report.verdict == "overridden"
    assert report["champion_challenger"].status == "overridden"
    assert report.override["reason"] == why and report.override["by"] == "ada" and report.override["at"]
    stored = json.loads(Path(_download(world, world["v3"].run_id, "shipyard/gates/report.json")).read_text())
    assert stored["override"]["reason"] == why and stored["verdict"] == "overridden"
    for tags in (registry.resolve(str(world["v3"])).tags, _client(world["ws"]).get_run(world["v3"].run_id).data.tags):
        assert tags["shipyard.gate.override.reason"] == why
        assert tags["shipyard.gate.override.by"] == "ada"
        assert tags["shipyard.gate.champion_challenger"] == "overridden"
        assert tags["shipyard.gate.verdict"] == "overridden"
    logged = [r for r in audit.read(event="gate.override") if r["version"] == world["v3"].version]
    assert logged[-1]["reason"] == why and logged[-1]["who"] == "ada" and logged[-1]["gates"] == ["champion_challenger"]
    # the overridden version goes back to failing for the tests that follow
    check(str(world["v3"]), world["gates"], world["holdout"])


def test_report_is_stored_as_json_and_self_contained_html_with_a_figure(world):
    from html.parser import HTMLParser

    report = check(str(world["v3"]), [*world["gates"], slice_parity("mean radius", max_gap=0.05)], world["holdout"])
    html = Path(_download(world, world["v3"].run_id, "shipyard/gates/report.html")).read_text()

    class Images(HTMLParser):
        sources: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.sources.append(dict(attrs)["src"])

    parser = Images()
    parser.feed(html)
    assert parser.sources and parser.sources[0].startswith("data:image/png;base64,")
    assert "champion_challenger" in html and "slice.mean radius" in html
    assert "<img" in report._repr_html_()
    run_tags = _client(world["ws"]).get_run(world["v3"].run_id).data.tags
    assert run_tags["shipyard.gate.slice.mean radius"] == "fail"
    assert run_tags["shipyard.gate.report"] == f"runs:/{world['v3'].run_id}/shipyard/gates/report.json"
    verdicts = [r for r in audit.read(event="gate.verdict") if r["version"] == world["v3"].version]
    assert verdicts[-1]["gates"]["slice.mean radius"] == "fail"


def _cli(world, *args):
    env = {**os.environ, "SHIPYARD_PROJECT_DIR": str(world["project"]), "PYTHONPATH": str(SDK)}
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli", "gates", *args], env=env, capture_output=True, text=True, timeout=180
    )


def test_cli_check_returns_the_same_verdict_as_the_notebook_check(world):
    in_notebook = check(str(world["v3"]), world["gates"], world["holdout"])
    assert in_notebook.verdict == "fail"
    failing = _cli(world, "check", str(world["v3"]), "--json")
    assert failing.returncode == 1, failing.stderr
    cli_report = json.loads(failing.stdout)
    assert cli_report["verdict"] == in_notebook.verdict
    assert {r["name"]: r["status"] for r in cli_report["results"]} == {r.name: r.status for r in in_notebook.results}
    passing = _cli(world, "check", world["v2"].run_id)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "champion_challenger" in passing.stdout and "verdict: pass" in passing.stdout
    assert recheck(world["v2"].run_id).verdict == world["better"].verdict


def test_recheck_uses_the_recorded_champion_not_the_current_one(world):
    # v2 was checked against v1; v2 is now the champion itself, yet the re-check compares with v1 again
    again = recheck(str(world["v2"]))
    assert again.champion["version"] == world["v1"].version
    now = again["champion_challenger"].details["metrics"]["accuracy"]
    then = world["better"]["champion_challenger"].details["metrics"]["accuracy"]
    assert (now["candidate"], now["champion"]) == pytest.approx((then["candidate"], then["champion"]))


def test_attach_results_merges_external_results_into_the_version_report(world):
    ref = f"models:/{MODEL}/{world['v2'].version}"
    merged = attach_results(
        ref,
        [
            GateResult("parity", "pass", 0.0, 0.0, "171/171 rows identical", True),
            GateResult("latency", "fail", 900.0, 250.0, "p95 900 ms", True),
        ],
        source="smoke",
    )
    assert merged.verdict == "fail" and merged["latency"].source == "smoke"
    assert merged["champion_challenger"].status == "pass"
    tags = registry.resolve(ref).tags
    assert tags["shipyard.gate.latency"] == "fail" and tags["shipyard.gate.verdict"] == "fail"
    assert tags["shipyard.gate.champion_challenger"] == "pass"
    record = [r for r in audit.read(event="gate.attach") if r["version"] == world["v2"].version][-1]
    assert record["source"] == "smoke" and record["results"]["latency"]["value"] == 900.0
    assert shipyard.gates.load_report(ref)["parity"].status == "pass"
    assert recheck(ref)["latency"].status == "fail"  # kept as recorded
    attach_results(ref, [GateResult("latency", "pass", 40.0, 250.0, "p95 40 ms", True)], source="smoke")
    assert registry.resolve(ref).tags["shipyard.gate.verdict"] == "pass"


def test_gate_on_a_metric_never_logged_is_a_clear_error(world):
    with pytest.raises(GateError) as err:
        check(world["v2"], [threshold("val_auc >= 0.9")], world["holdout"])
    text = str(err.value)
    assert "threshold.val_auc" in text and "'val_auc' was never logged" in text and "train_accuracy" in text
    with pytest.raises(GateError, match="'accuracy' was never logged"):
        check(world["v2"], [threshold("accuracy >= 0.9", source="logged")])


def test_contract_for_a_missing_column_is_a_clear_error(world):
    with pytest.raises(GateError) as err:
        check(world["v2"], [data_contract([Column("mean radios", dtype="float64")])], world["holdout"])
    assert "contract.holdout" in str(err.value) and "'mean radios'" in str(err.value)


def test_holdout_with_wrong_columns_is_a_clear_error(world):
    broken = world["holdout"].drop(columns=["mean radius", "worst area"])
    with pytest.raises(GateError) as err:
        check(str(world["v3"]), world["gates"], broken)
    text = str(err.value)
    assert "champion_challenger" in text and "'mean radius'" in text and "'worst area'" in text
    with pytest.raises(GateError, match="no target column 'label'"):
        check(str(world["v3"]), world["gates"], world["holdout"], target="label")
    with pytest.raises(GateError, match="needs a holdout set"):
        check(str(world["v3"]), world["gates"])
    with pytest.raises(GateError, match="no column 'region' to slice by"):
        check(str(world["v3"]), [slice_parity("region")], world["holdout"])


def _download(world, run_id, path):
    target = world["project"] / "downloads" / run_id
    target.mkdir(parents=True, exist_ok=True)
    return _client(world["ws"]).download_artifacts(run_id, path, str(target))


def test_holdout_as_x_y_tuple_and_run_candidate(world):
    X = world["holdout"].drop(columns=["target"])
    y = world["holdout"]["target"]
    report = check(world["v2"].run_id, [threshold("accuracy >= 0.9", source="holdout")], (X, y), record=False)
    assert report.verdict == "pass"
    assert report.candidate["run_id"] == world["v2"].run_id and report.candidate["version"] is None
    assert isinstance(report.to_dict()["results"][0]["value"], float)
    assert json.loads(report.to_json())["verdict"] == "pass"


def test_step_end_hook_records_and_stops_on_failure_only_when_asked(world):
    from types import SimpleNamespace

    from shipyard.flows._hooks import StepEnd
    from shipyard.gates import gate
    from shipyard.gates._decorator import on_step_end

    @gate(champion_challenger("accuracy", tolerance=0.01), model_name=MODEL, on_fail="stop")
    def train(self):
        return None

    @gate
    def train_dynamic(self):
        return None

    flow = SimpleNamespace(holdout=world["holdout"], gates=[threshold("accuracy >= 0.6")])
    run_id = world["v3"].run_id

    def end(fn, exception=None):
        return StepEnd(fn.__name__, flow, fn, run_id, world["ws"], exception)

    with pytest.raises(GateFailed) as err:
        on_step_end(end(train))
    assert "champion_challenger" in str(err.value) and err.value.report.verdict == "fail"
    assert _client(world["ws"]).get_run(run_id).data.tags["shipyard.gate.verdict"] == "fail"

    on_step_end(end(train_dynamic))  # bare @gate: the gates come from self.gates
    assert _client(world["ws"]).get_run(run_id).data.tags["shipyard.gate.threshold.accuracy"] == "pass"

    before = len(list(audit.read(event="gate.verdict")))
    on_step_end(end(train, exception=RuntimeError("step failed")))  # a failed step is not gated
    assert len(list(audit.read(event="gate.verdict"))) == before

    @gate(CONTRACT, datasets=["features"])
    def needs_data(self):
        return None

    with pytest.raises(GateError, match="self.features"):
        on_step_end(end(needs_data))
    flow.gates = []
    with pytest.raises(GateError, match="declares no gates"):
        on_step_end(end(train_dynamic))


def test_data_parquet_cannot_hold_is_stored_and_rechecked_all_the_same(world):
    frame = _contract_holdout(world)
    frame["site"] = frame["site"].astype(object)
    frame.loc[0, "site"] = 7  # a number among strings: the contract flags it, Parquet cannot store it
    report = check(str(world["v4"]), [CONTRACT], frame)
    assert report.verdict == "fail" and report.data["holdout"].endswith(".pkl")
    assert any("stored as a pickle" in n for n in report.notes)
    again = recheck(str(world["v4"]))
    assert again.verdict == "fail"
    assert again["contract.holdout"].details["violations"] == report["contract.holdout"].details["violations"]


def test_cli_show_prints_the_recorded_report_and_bad_refs_exit_2(world):
    from click.testing import CliRunner

    from shipyard.cli import cli

    shown = CliRunner().invoke(cli, ["gates", "show", str(world["v1"])])
    assert shown.exit_code == 0, shown.output
    assert "as recorded" in shown.output and "first model passes" in shown.output
    missing = CliRunner().invoke(cli, ["gates", "check", f"{MODEL}/99"])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    with shipyard.start_run("gates-it") as bare:
        pass
    nothing = CliRunner().invoke(cli, ["gates", "check", bare.run_id])
    assert nothing.exit_code == 2 and "No gate report is recorded" in nothing.output
    same_run = registry.register(MODEL, world["train_run"], alias=None)  # v1's run, registered again
    other = CliRunner().invoke(cli, ["gates", "check", str(same_run)])
    assert other.exit_code == 2 and f"is for {MODEL}/{world['v1'].version}" in other.output
