"""``shipyard monitor`` on a real MLflow store: capture folders, DataFrames, Prometheus, the CLI's exit codes.

One model is trained and logged (with its training set) once per module; each
test registers it under its own name, so version tags and monitoring runs of
one test never meet another's. The reference profile is the one packaging
freezes (``reference_for``), built from the logged training sample.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shipyard
from shipyard import registry
from shipyard._core import audit, lineage
from shipyard._core.errors import MonitoringError
from shipyard._core.workspace import reset_workspace, slug
from shipyard.gates import drift, prediction_drift

from tests.conftest import REPO, free_port, outside_env

ROWS = 1500


def _frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "income": rng.normal(50, 5, n),
            "city": rng.choice(["lyon", "oslo", "rome"], n),
        }
    )


def _shifted(trained, n: int, seed: int) -> pd.DataFrame:
    """Training rows with income moved up: only income drifts (fresh draws would move age by sampling noise
    close to the threshold, on a 1,000-row reference sample)."""
    rows = trained["X"].sample(n, random_state=seed).reset_index(drop=True)
    rows["income"] += 15.0
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tracked run of a small sklearn pipeline (two numbers, one category), its training set logged."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    project = tmp_path_factory.mktemp("monitor-project")
    mp = pytest.MonkeyPatch()
    mp.setenv("SHIPYARD_PROJECT_DIR", str(project))
    reset_workspace()
    shipyard.init(project_dir=project)
    X = _frame(np.random.default_rng(0), ROWS)
    y = (X["age"] > 40).astype(int)
    encode = ColumnTransformer([("city", OneHotEncoder(handle_unknown="ignore"), ["city"])], remainder="passthrough")
    model = make_pipeline(encode, LogisticRegression(max_iter=500)).fit(X, y)
    with shipyard.start_run("monitor-it") as run:
        shipyard.log_dataset(X, name="train")
        shipyard.log_model(model, name="clf", input_example=X.iloc[:3])
    reset_workspace()
    mp.undo()
    return {"project": project, "run_id": run.run_id, "model": model, "X": X}


@pytest.fixture
def workspace(_isolated_settings, trained, monkeypatch):
    monkeypatch.setenv("SHIPYARD_PROJECT_DIR", str(trained["project"]))
    monkeypatch.chdir(trained["project"])
    reset_workspace()
    return shipyard.init(project_dir=trained["project"])


def _champion(name: str, trained) -> str:
    version = registry.register(name, trained["run_id"], model="clf")
    registry.swap_champion(name, version.version, reason="monitored in tests")
    return version.version


def _write_capture(
    root: Path, name: str, version: str, frame: pd.DataFrame, predictions, *, fingerprint: str = "", files: int = 2
) -> Path:
    """A capture folder as the image writes it (docs/monitoring.md), with a half-written last line."""
    folder = root / slug(name) / f"v{version}"
    folder.mkdir(parents=True)
    manifest = {
        "model": name,
        "version": version,
        "digest": "0" * 64,
        "reference": fingerprint,
        "columns": list(frame.columns),
        "sensitive": {},
    }
    (folder / "capture.json").write_text(json.dumps(manifest))
    now = time.time()
    records = [
        json.dumps({"ts": now + i / 1000, "inputs": row, "prediction": int(p)})
        for i, (row, p) in enumerate(zip(frame.to_dict(orient="records"), predictions, strict=True))
    ]
    for part in range(files):
        chunk = records[part::files]
        text = "\n".join(chunk) + "\n"
        if part == files - 1:
            text += '{"ts": 1, "inputs": {"age": 4'  # the image was writing this line when it was read
        (folder / f"rows-{100 + part}-{int(now * 1000)}-1.jsonl").write_text(text)
    return folder


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.figures: list[str] = []
        self.rows: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(a)
        elif tag == "figure":
            self.figures.append(a.get("data-column", ""))
        elif tag == "tr" and "data-column" in a:
            self.rows[a["data-column"]] = a.get("data-drifted", "")


def _monitoring_runs(mlflow_client, name: str, version: str):
    experiment = mlflow_client.get_experiment_by_name("shipyard-monitoring")
    assert experiment is not None
    return mlflow_client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{lineage.MONITOR_OF_VERSION}` = '{name}/{version}'"
    )


def test_capture_folder_drift_is_recorded_on_mlflow_the_version_and_the_audit_log(
    workspace, mlflow_client, trained, tmp_path
):
    name = "monitor-capture"
    version = _champion(name, trained)
    current = _shifted(trained, 800, 1)
    root = tmp_path / "capture"
    _write_capture(root, name, version, current, trained["model"].predict(current))

    report = shipyard.monitor(name, capture=root)  # a bare name: its champion

    assert (report.model, report.version, report.source, report.rows) == (name, version, "capture", 800)
    assert report.result.drifted_columns == ["income"]
    assert report.verdict == "fail" and not report.passed
    assert report.gates[0].name == "drift" and report.gates[0].status == "fail" and "income" in report.gates[0].message
    assert report.result.prediction is not None  # the capture held predictions, the profile has reference ones
    assert any("unreadable capture line" in n for n in report.notes)

    runs = _monitoring_runs(mlflow_client, name, version)
    assert [r.info.run_id for r in runs] == [report.run_id]
    run = runs[0]
    assert run.data.tags[lineage.MONITOR_VERDICT] == "fail"
    assert run.data.metrics["drift.income"] == pytest.approx(report.result.columns[1].distance)
    assert run.data.metrics["drift.income"] >= 0.1 > run.data.metrics["drift.age"]
    assert run.data.metrics["rows"] == 800
    listed = {f.path for f in mlflow_client.list_artifacts(run.info.run_id, lineage.MONITOR_ARTIFACT_DIR)}
    assert listed == {"monitoring/drift.json", "monitoring/drift.html"}
    stored = json.loads(
        Path(mlflow_client.download_artifacts(run.info.run_id, "monitoring/drift.json", str(tmp_path))).read_text()
    )
    assert stored["verdict"] == "fail" and stored["result"]["drifted_columns"] == ["income"]
    assert stored["reference"]["source"] == "training"

    page = _Html()
    page.feed(report.html_path.read_text(encoding="utf-8"))
    assert len(page.images) == len(report.result.drifted_columns) == 1  # one figure per drifting column
    assert page.figures == ["income"]
    assert page.images[0]["src"].startswith("data:image/png;base64,")
    assert base64.b64decode(page.images[0]["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.rows == {"age": "false", "income": "true", "city": "false", "prediction": "false"}
    assert "<img" in report._repr_html_()

    tags = mlflow_client.get_model_version(name, version).tags
    assert tags[lineage.MONITOR_VERDICT] == "fail"
    assert tags[lineage.MONITOR_RUN] == report.run_id
    assert tags[lineage.MONITOR_DRIFTED] == "income"
    assert datetime.fromisoformat(tags[lineage.MONITOR_AT])

    event = [e for e in audit.read(event="monitor") if e["model"] == name][-1]
    assert (event["version"], event["verdict"], event["run_id"], event["drifted"]) == (
        version,
        "fail",
        report.run_id,
        ["income"],
    )

    panel = shipyard.panel(name)
    try:
        assert panel.drift["version"] == version and panel.drift["verdict"] == "fail"
        assert panel.drift["drifted"] == ["income"]
        assert panel.drift["columns"]["income"] == pytest.approx(run.data.metrics["drift.income"])
        assert 'data-column="income" data-drifted="true"' in panel._drift_html.value
    finally:
        panel.close()


def test_dataframe_source_passes_and_replaces_the_version_tags(workspace, mlflow_client, trained):
    name = "monitor-frame"
    version = _champion(name, trained)
    shifted = _shifted(trained, 600, 2)
    first = shipyard.monitor(f"{name}/{version}", data=shifted)
    assert first.verdict == "fail"

    same = trained["X"].sample(900, random_state=3).reset_index(drop=True)
    same["prediction"] = trained["model"].predict(same)
    report = shipyard.monitor(
        f"{name}@champion",
        data=same,
        gates=[drift(), prediction_drift(max_distance=0.2)],
        retrain_data="never-read.parquet",  # nothing drifted: no retraining
    )

    assert report.passed and report.verdict == "pass" and report.source == "data"
    assert report.result.drifted_columns == []
    assert [g.status for g in report.gates] == ["pass", "pass"]
    assert report.retrain is None
    assert report.result.prediction is not None and report.result.prediction.distance < 0.2
    tags = mlflow_client.get_model_version(name, version).tags
    assert (tags[lineage.MONITOR_VERDICT], tags[lineage.MONITOR_RUN], tags[lineage.MONITOR_DRIFTED]) == (
        "pass",
        report.run_id,
        "",
    )
    assert len(_monitoring_runs(mlflow_client, name, version)) == 2
    page = _Html()
    page.feed(report.html_path.read_text(encoding="utf-8"))
    assert page.images == []

    as_dict = {c: same[c].tolist() for c in ("age", "income", "city")}
    plain = shipyard.monitor(name, data=as_dict, gates=[drift(["income"], max_distance=0.5, blocking=False)])
    assert plain.passed and plain.gates[0].value < 0.5
    assert any("prediction drift not measured" in n for n in plain.notes)


def test_a_capture_of_another_version_empty_captures_and_wrong_sources_are_typed_errors(workspace, trained, tmp_path):
    name = "monitor-errors"
    version = _champion(name, trained)
    frame = _frame(np.random.default_rng(4), 50)
    other = _write_capture(tmp_path / "other", name, "7", frame, trained["model"].predict(frame))

    with pytest.raises(MonitoringError) as folder_of_other:
        shipyard.monitor(name, capture=other)
    assert f"{name} v7" in folder_of_other.value.message and f"{name} v{version}" in folder_of_other.value.message
    with pytest.raises(MonitoringError) as root_of_other:
        shipyard.monitor(name, capture=tmp_path / "other")
    assert f"{name} v7" in root_of_other.value.message and f"v{version}" in root_of_other.value.message

    empty = tmp_path / "empty" / slug(name) / f"v{version}"
    empty.mkdir(parents=True)
    (empty / "capture.json").write_text(json.dumps({"model": name, "version": version, "columns": [], "sensitive": {}}))
    with pytest.raises(MonitoringError, match="no rows"):
        shipyard.monitor(name, capture=tmp_path / "empty")
    with pytest.raises(MonitoringError, match="exactly one source"):
        shipyard.monitor(name)
    with pytest.raises(MonitoringError, match="exactly one source"):
        shipyard.monitor(name, data=frame, capture=other)
    with pytest.raises(MonitoringError, match="none of the model's input columns"):
        shipyard.monitor(name, data=pd.DataFrame({"other": [1, 2]}))

    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(MonitoringError) as no_answer:
        shipyard.monitor(name, prometheus=closed)
    assert closed in no_answer.value.message and "does not answer" in no_answer.value.message


_EXPORTER = """
import json, sys, time
from prometheus_client import start_http_server
from shipyard.monitoring.drift import compute_drift
from shipyard.monitoring.runtime import _Metrics

profile, current, labels, port = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), json.loads(sys.argv[3]), int(sys.argv[4])
metrics = _Metrics(labels, profile)
metrics.drift(compute_drift(profile, current["columns"], predictions=current["predictions"], threshold=0.1))
metrics.counted(len(current["predictions"]), 0, {})
start_http_server(port, addr="127.0.0.1")
print("ready", flush=True)
time.sleep(300)
"""


def test_prometheus_source_reads_the_gauges_the_image_exports(workspace, trained, tmp_path):
    from shipyard.monitoring.drift import compute_drift
    from shipyard.packaging.reference import reference_for

    from tests.prometheus_support import PrometheusServer

    name = "monitor-prometheus"
    version = _champion(name, trained)
    profile = reference_for(name, version)
    current = _shifted(trained, 700, 5)
    columns = {c: current[c].tolist() for c in current.columns}
    predictions = trained["model"].predict(current).tolist()
    (tmp_path / "profile.json").write_text(json.dumps(profile))
    (tmp_path / "current.json").write_text(json.dumps({"columns": columns, "predictions": predictions}))
    expected = compute_drift(profile, columns, predictions=predictions, threshold=0.1)
    port = free_port()
    labels = {"model": name, "version": version, "digest": "0" * 12}
    exporter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _EXPORTER,
            str(tmp_path / "profile.json"),
            str(tmp_path / "current.json"),
            json.dumps(labels),
            str(port),
        ],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert exporter.stdout is not None and exporter.stdout.readline().strip() == b"ready"
        with PrometheusServer(tmp_path / "prometheus") as prometheus:
            prometheus.scrape([f"127.0.0.1:{port}"])
            prometheus.wait_for(
                lambda: prometheus.query(f'shipyard_drift_window_rows{{model="{name}"}}'), 30, "drift gauges scraped"
            )
            report = shipyard.monitor(f"{name}/{version}", prometheus=prometheus.url)
    finally:
        exporter.kill()
        exporter.wait(timeout=10)

    assert report.source == "prometheus" and report.rows == 700
    assert report.result.drifted_columns == expected.drifted_columns == ["income"]
    got = {c.column: c.distance for c in report.result.columns}
    assert got == pytest.approx({c.column: c.distance for c in expected.columns})
    assert report.result.prediction is not None
    assert report.result.prediction.distance == pytest.approx(expected.prediction.distance)
    assert report.verdict == "fail"
    page = _Html()
    page.feed(report.html_path.read_text(encoding="utf-8"))
    assert [i["alt"] for i in page.images] == ["income: reference vs current"]


def _cli(*args: str, project: Path) -> subprocess.CompletedProcess[str]:
    env = outside_env()
    env["SHIPYARD_PROJECT_DIR"] = str(project)
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "shipyard"), *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=project,
        timeout=300,
    )


def test_cli_exit_codes_pass_drift_and_error(workspace, trained, tmp_path):
    name = "monitor-cli"
    version = _champion(name, trained)
    same = tmp_path / "same.csv"
    trained["X"].sample(900, random_state=6).to_csv(same, index=False)
    shifted = tmp_path / "shifted.parquet"
    _shifted(trained, 600, 7).to_parquet(shifted)

    passed = _cli("monitor", name, "--data", str(same), project=trained["project"])
    assert passed.returncode == 0, passed.stderr
    assert "PASS" in passed.stdout and "run " in passed.stdout

    drifted = _cli("monitor", f"{name}/{version}", "--data", str(shifted), "--json", project=trained["project"])
    assert drifted.returncode == 1, drifted.stderr
    out = json.loads(drifted.stdout)
    assert out["verdict"] == "fail" and out["result"]["drifted_columns"] == ["income"]

    lenient = _cli("monitor", name, "--data", str(shifted), "--max-distance", "1000", project=trained["project"])
    assert lenient.returncode == 0, lenient.stderr

    closed = f"http://127.0.0.1:{free_port()}"
    error = _cli("monitor", name, "--prometheus", closed, project=trained["project"])
    assert error.returncode == 2 and closed in error.stderr

    usage = _cli("monitor", name, "--data", str(same), "--retrain", project=trained["project"])
    assert usage.returncode == 2 and "--data-for-retrain" in usage.stderr
