"""`shipyard runs` and `shipyard show` as a user runs them: a subprocess on a real store."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import shipyard


def _cli(project, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHIPYARD_PROJECT_DIR": str(project), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture
def two_runs(workspace):
    ids = []
    for accuracy in (0.81, 0.87):
        with shipyard.start_run("cli-demo") as run:
            shipyard.log_metric("accuracy", accuracy)
            shipyard.log_params(model="tree")
        ids.append(run.run_id)
    return ids


def test_runs_lists_recent_runs_with_key_metrics(workspace, two_runs) -> None:
    out = _cli(workspace.project_dir, "runs")
    assert out.returncode == 0, out.stderr
    assert two_runs[0][:12] in out.stdout and two_runs[1][:12] in out.stdout
    assert "accuracy=0.87" in out.stdout and "FINISHED" in out.stdout
    assert out.stdout.index(two_runs[1][:12]) < out.stdout.index(two_runs[0][:12])  # newest first


def test_show_prints_params_metrics_and_lineage(workspace, two_runs) -> None:
    out = _cli(workspace.project_dir, "show", two_runs[1][:10])
    assert out.returncode == 0, out.stderr
    for text in (two_runs[1], "model", "tree", "accuracy", "shipyard.python", "lineage/"):
        assert text in out.stdout, text


def test_show_of_an_unknown_run_is_a_clear_error(workspace) -> None:
    out = _cli(workspace.project_dir, "show", "deadbeef")
    assert out.returncode == 2
    assert "No tracked run matches 'deadbeef'" in out.stderr
    assert "shipyard runs" in out.stderr


# -- the functions the commands print: shipyard.runs() and shipyard.get_run() ---------------


def test_runs_returns_tracked_runs_newest_first(workspace, two_runs) -> None:
    found = shipyard.runs()
    assert [r.run_id for r in found] == [two_runs[1], two_runs[0]]
    newest = found[0]
    assert isinstance(newest, shipyard.TrackedRun)
    assert (newest.experiment, newest.status) == ("cli-demo", "FINISHED")
    assert newest.metrics == {"accuracy": 0.87} and newest.params == {"model": "tree"}
    assert newest.start_time is not None and newest.start_time.tzinfo is not None
    assert newest.lineage == shipyard.Lineage.from_tags(newest.tags, run_id=newest.run_id)
    assert newest.shipyard_tags["shipyard.managed"] == "true"
    assert all(key.startswith("shipyard.") for key in newest.shipyard_tags)
    assert [r.run_id for r in shipyard.runs(1)] == [two_runs[1]]
    assert len(shipyard.runs(experiment="cli-demo")) == 2
    assert shipyard.runs(experiment="no-such-experiment") == []


def test_runs_lists_only_runs_shipyard_tracked(workspace, two_runs, mlflow_client) -> None:
    foreign = mlflow_client.create_run(mlflow_client.create_experiment("not-shipyard")).info.run_id
    assert foreign not in {r.run_id for r in shipyard.runs()}
    assert shipyard.get_run(foreign).run_id == foreign  # but it can still be looked at by id


def test_get_run_by_id_prefix_and_pathspec(workspace, two_runs) -> None:
    with shipyard.start_run("cli-demo", tags={"shipyard.metaflow.pathspec": "DemoFlow/7"}) as run:
        shipyard.log_metric("loss", 0.5)
        shipyard.log_metric("loss", 0.25)
    by_id = shipyard.get_run(two_runs[0])
    assert by_id.run_id == two_runs[0] and by_id.metrics == {"accuracy": 0.81}
    assert shipyard.get_run(two_runs[1][:8]).run_id == two_runs[1]
    assert shipyard.get_run(f"  {two_runs[1][:8].upper()} ").run_id == two_runs[1]
    flow_run = shipyard.get_run("DemoFlow/7")
    assert flow_run.run_id == run.run_id and flow_run.lineage.pathspec == "DemoFlow/7"
    assert [p.value for p in flow_run.metric_history().metrics["loss"]] == [0.5, 0.25]
    assert "lineage/requirements.lock.txt" in flow_run.artifacts()
    assert flow_run == shipyard.get_run(run.run_id) and hash(flow_run) == hash(shipyard.get_run(run.run_id))


def test_get_run_names_what_was_not_found(workspace, two_runs) -> None:
    for ref in ("deadbeef", "NoSuchFlow/1", "", "it's/odd", "not-a-run-id"):
        with pytest.raises(shipyard.TrackingError) as err:
            shipyard.get_run(ref)
        assert f"No tracked run matches {ref!r}" in str(err.value), ref
        assert "shipyard runs" in (err.value.hint or "")


def test_get_run_refuses_an_ambiguous_prefix(workspace, mlflow_client) -> None:
    experiment = mlflow_client.create_experiment("many")
    # 17 ids over 16 hex digits: at least two share their first character.
    ids = [mlflow_client.create_run(experiment).info.run_id for _ in range(17)]
    shared = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) > 1)
    with pytest.raises(shipyard.TrackingError, match=f"{shared!r} is the start of more than one run id") as err:
        shipyard.get_run(shared)
    assert "more characters" in (err.value.hint or "")


def test_show_accepts_a_pathspec(workspace) -> None:
    with shipyard.start_run("cli-demo", tags={"shipyard.metaflow.pathspec": "DemoFlow/8"}) as run:
        shipyard.log_metric("accuracy", 0.9)
    out = _cli(workspace.project_dir, "show", "DemoFlow/8")
    assert out.returncode == 0, out.stderr
    assert run.run_id in out.stdout and "DemoFlow/8" in out.stdout
