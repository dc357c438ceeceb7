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
