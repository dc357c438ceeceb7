"""MetricFollower against a real MLflow sqlite store: a live read must equal a full read, at every moment.

The follower reads new points from the run's live log (a run logging on this
machine) or pages MLflow from its last page (a run logging elsewhere), and the
final state of an ended run from MLflow. Each path is compared with
``metric_history`` (a full read) and with a plain MLflow client.
"""

from __future__ import annotations

import pytest

import shipyard
from shipyard.tracking import MetricFollower, metric_history


def _log(step: int) -> None:
    shipyard.log_metric("train/loss", 1.0 / (step + 1), step=step)
    shipyard.log_metric("val/accuracy", step / (step + 3), step=step)


def test_live_reads_equal_full_reads_while_the_run_goes_on_and_after(workspace, mlflow_client) -> None:
    with shipyard.start_run("follow") as run:
        follower = MetricFollower(run.run_id)
        live_dir = workspace.live_dir / run.run_id
        for step in range(300):
            _log(step)
            if step % 41 == 0:
                shipyard.flush()
                assert follower.read().metrics == metric_history(run.run_id).metrics, step
        shipyard.flush()
        assert live_dir.is_dir()
        history = follower.read()
        assert history.running and history.points == 600
    assert not live_dir.exists(), "a finished run's live log is removed"
    final = follower.read()
    assert final.status == "FINISHED"
    for name in ("train/loss", "val/accuracy"):
        expected = sorted((p.step, p.value) for p in mlflow_client.get_metric_history(run.run_id, name))
        assert [(p.step, p.value) for p in final.metrics[name]] == expected


def test_a_run_without_a_live_log_is_paged_from_mlflow_without_rereading_it(workspace, mlflow_client) -> None:
    from mlflow.entities import Metric

    with shipyard.start_run("follow") as run:
        follower = MetricFollower(run.run_id)
        follower._tail = False  # as for a run whose steps log on another machine
        follower.page_size = 7
        queries: list[int] = []
        for step in range(120):
            _log(step)
            if step % 13 == 0:
                shipyard.flush()
                before = follower.queries
                assert follower.read().metrics == metric_history(run.run_id).metrics, step
                queries.append(follower.queries - before)
        # a point with an old timestamp lands in a page already read: the metric is read again
        shipyard.flush()
        mlflow_client.log_batch(run.run_id, metrics=[Metric("val/accuracy", 0.5, 1000, 2)])
        assert follower.read().metrics == metric_history(run.run_id).metrics
    # a poll costs a get_run plus, per metric, the last page and the pages added since: not the whole history
    assert max(queries[2:]) <= 1 + 2 * 4, queries


def test_a_run_on_a_tracking_server_is_paged_over_rest(project, server) -> None:
    """The paged reads go through a real `mlflow server` (its REST API) when the team shares one."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    shipyard.init(project_dir=project, tracking_uri=server.uri)
    client = MlflowClient(tracking_uri=server.uri)
    with shipyard.start_run("follow-remote") as run:
        follower = MetricFollower(run.run_id)
        follower._tail = False  # as seen from a machine the run does not log on
        follower.page_size = 9
        for step in range(60):
            _log(step)
            if step % 11 == 0:
                shipyard.flush()
                assert follower.read().metrics == metric_history(run.run_id).metrics, step
        client.log_batch(run.run_id, metrics=[Metric("train/loss", 0.25, 1000, 1)])  # late, in an old page
        shipyard.flush()
        assert follower.read().metrics == metric_history(run.run_id).metrics
    final = follower.read()
    assert final.status == "FINISHED" and final.points == 121
    assert sorted((p.step, p.value) for p in client.get_metric_history(run.run_id, "train/loss")) == [
        (p.step, p.value) for p in final.metrics["train/loss"]
    ]


def test_an_unknown_run_raises_a_tracking_error(workspace) -> None:
    with pytest.raises(shipyard.TrackingError, match="No run 'nope'"):
        MetricFollower("nope").read()
