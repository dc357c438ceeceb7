"""The loop closed: a promoted image sees drifting traffic, `shipyard monitor` confirms it from what the image
captured, and `--retrain` trains the same flow on new data and promotes the result."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from shipyard._core import audit
from tests.docker_support import ServedImage
from tests.monitoring_support import flow_module, predict_body

SHIPYARD = Path(sys.executable).with_name("shipyard")
_GAUGE = re.compile(r'^shipyard_drift_distance\{(?P<labels>[^}]*)\} (?P<value>\S+)$', re.M)


def _distances(metrics: str) -> dict[str, float]:
    out = {}
    for match in _GAUGE.finditer(metrics):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        out[labels["column"]] = float(match["value"])
    return out


@pytest.mark.docker
def test_drift_seen_by_the_image_is_confirmed_and_retraining_moves_the_champion(
    monitored_image: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = monitored_image
    project: Path = m["project"]
    monkeypatch.setenv("SHIPYARD_PROJECT_DIR", str(project))
    monkeypatch.chdir(project)
    capture = tmp_path / "capture"
    capture.mkdir()
    os.chmod(capture, 0o777)  # the image runs as a non-root user
    shifted = m["shift"](m["holdout"].head(2000))
    # One worker: its window holds every row sent, the rows `shipyard monitor` reads back from the capture.
    # (Two workers each drift over their own share; the Prometheus test runs the image with both.)
    env = {"SHIPYARD_CAPTURE": "1", "SHIPYARD_CAPTURE_DIR": "/capture", "SHIPYARD_MONITOR_INTERVAL_SECONDS": "1",
           "SHIPYARD_SERVING_WORKERS": "1"}
    with ServedImage(m["image"], env=env, volumes={str(capture): "/capture"}) as served:
        for start in range(0, len(shifted), 100):
            status, body = served.request("POST", "/predict", predict_body(shifted.iloc[start : start + 100]))
            assert status == 200, body
        deadline = time.monotonic() + 30
        while True:
            status, metrics = served.request("GET", "/metrics")
            gauges = _distances(metrics.decode())
            window = re.search(r"^shipyard_drift_window_rows\{[^}]*\} (\S+)$", metrics.decode(), re.M)
            if window and float(window.group(1)) == len(shifted) or time.monotonic() > deadline:
                break  # computed over every row sent
            time.sleep(0.5)
        served.stop()  # SIGTERM: the service drains its queue and flushes the capture before it exits
    seen_drifting = {c for c, d in gauges.items() if d >= 0.1}
    assert seen_drifting == set(m["columns"]), gauges

    # a clean stop loses nothing: every row served is in the capture, with its prediction
    folder = capture / "retrain-demo" / f"v{m['version']}"
    manifest = json.loads((folder / "capture.json").read_text())
    assert manifest["version"] == m["version"] and manifest["model"] == m["model"]
    lines = [json.loads(line) for f in sorted(folder.glob("rows-*.jsonl")) for line in f.read_text().splitlines()]
    assert len(lines) == len(shifted)
    assert {row["inputs"]["plan"] for row in lines} <= {"enterprise", "plus", "pro"}

    new_data = tmp_path / "new.csv"
    flow_module().make_rows(n=400, seed=11, shift=8.0).to_csv(new_data, index=False)
    before = len(list(audit.read()))
    proc = subprocess.run(
        [str(SHIPYARD), "monitor", f"{m['model']}@champion", "--capture", str(capture), "--json",
         "--retrain", "--data-for-retrain", str(new_data)],
        capture_output=True, text=True, cwd=project, timeout=900,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a drift gate failed (and retraining ran)
    report = json.loads(proc.stdout)
    drifted = {c["column"] for c in report["result"]["columns"] if c["drifted"]}
    assert drifted == seen_drifting, report  # the same verdicts as the image's gauges
    assert report["verdict"] == "fail" and report["retrain"]["verdict"] == "pass", report

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{project / '.shipyard' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(m["model"], "champion")
    previous = client.get_model_version_by_alias(m["model"], "previous")
    assert str(previous.version) == m["version"] and int(champion.version) > int(m["version"])
    assert client.get_model_version(m["model"], m["version"]).tags["shipyard.monitor.verdict"] == "fail"

    # the audit log tells the story in order: the drift found, the retraining, the new version promoted
    events = list(audit.read())[before:]
    story = [
        e["event"] for e in events
        if e["event"] in {"monitor", "retrain.started", "model.register", "promotion.completed", "retrain.finished"}
    ]
    assert story == ["monitor", "retrain.started", "model.register", "promotion.completed", "retrain.finished"], story
    assert [str(e["version"]) for e in events if e["event"] == "promotion.completed"] == [str(champion.version)]
