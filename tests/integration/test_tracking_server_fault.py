"""A real `mlflow server` dies in the middle of a run and comes back: every point is stored once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import shipyard

from .conftest import MlflowServer

FLOW = Path(__file__).parent / "flows" / "steady_logging_flow.py"
POINTS = 1500


@pytest.mark.slow
def test_points_survive_a_server_crash_exactly_once(project: Path, server: MlflowServer) -> None:
    from mlflow.tracking import MlflowClient

    shipyard.init(project_dir=project, tracking_uri=server.uri)
    client = MlflowClient(tracking_uri=server.uri)
    outage: dict[str, float] = {}

    def crash_and_restart() -> None:
        # wait until the run is live and points are arriving, then pull the plug
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            experiments = [e.experiment_id for e in client.search_experiments()]
            runs = client.search_runs(experiments, max_results=1) if experiments else []
            if runs and len(client.get_metric_history(runs[0].info.run_id, "train/loss")) >= 100:
                break
            time.sleep(0.2)
        server.kill()
        outage["killed"] = time.monotonic()
        time.sleep(2.0)  # the flow keeps logging into a dead server
        server.start()
        outage["back"] = time.monotonic()

    chaos = threading.Thread(target=crash_and_restart)
    chaos.start()
    result = shipyard.run(FLOW, points=POINTS, seconds=12.0)
    chaos.join(timeout=120)

    assert "killed" in outage and "back" in outage, "the server was never killed during the run"
    history = client.get_metric_history(result.mlflow_run_id, "train/loss")
    steps = [p.step for p in history]
    assert len(steps) == POINTS, f"expected {POINTS} points, found {len(steps)}"
    assert sorted(steps) == list(range(POINTS))  # every point, none twice
    assert client.get_run(result.mlflow_run_id).info.status == "FINISHED"
    assert not any((project / ".shipyard" / "spool").rglob("*.jsonl")), "spooled batches were left behind"


def test_spooled_points_are_replayed_by_sync(
    project: Path, server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Points logged while the server is down stay on disk until `sync` sends them."""
    from mlflow.tracking import MlflowClient

    ws = shipyard.init(project_dir=project, tracking_uri=server.uri, flush_timeout=1.0)
    client = MlflowClient(tracking_uri=server.uri)
    with pytest.raises(shipyard.TrackingUnavailable):
        with shipyard.start_run("offline") as run:
            shipyard.log_metric("x", 1.0, step=0)
            shipyard.flush()
            monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            server.kill()
            for i in range(1, 300):
                shipyard.log_metric("x", float(i), step=i)
    # the run could not be finished while the server was down; its points are on disk
    assert list(ws.spool_dir.rglob("*.jsonl"))
    with pytest.raises(shipyard.TrackingUnavailable, match="could not be sent"):
        shipyard.sync()
    server.start()
    assert shipyard.sync() >= 1
    assert sorted(p.step for p in client.get_metric_history(run.run_id, "x")) == list(range(300))
    assert not list(ws.spool_dir.rglob("*.jsonl"))
