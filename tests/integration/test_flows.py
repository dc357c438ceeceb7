"""Decorated flows on the real Metaflow runtime against a real MLflow sqlite store."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import shipyard
from shipyard._core import lineage

FLOW = Path(__file__).parent / "flows" / "branching_flow.py"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):
    """One successful run of the branching flow, shared by the assertions below."""
    project = tmp_path_factory.mktemp("flows")
    mp = pytest.MonkeyPatch()
    mp.setenv("SHIPYARD_PROJECT_DIR", str(project))
    from shipyard._core.workspace import reset_workspace

    reset_workspace()
    ws = shipyard.init(project_dir=project)
    result = shipyard.run(FLOW, points=150)
    yield ws, result
    mp.undo()


def _client(ws):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=ws.tracking_uri)


def test_one_mlflow_run_per_metaflow_run(finished) -> None:
    ws, result = finished
    client = _client(ws)
    experiment = client.get_experiment_by_name("BranchingFlow")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [result.mlflow_run_id]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params == {"points": "150", "fail_in": "", "optimizer": "sgd"}
    assert {p.step for p in client.get_metric_history(run.info.run_id, "loss")} == set(range(150))
    assert len(client.get_metric_history(run.info.run_id, "right_progress")) == 150
    assert run.data.metrics["left_score"] == 0.25
    assert run.data.metrics["final_accuracy"] == 0.93
    for step in ("start", "left", "right", "join", "end"):
        assert run.data.tags[lineage.step_tag(step, "status")] == "ok"
        assert run.data.tags[lineage.step_tag(step, "task")].startswith(result.pathspec + f"/{step}/")


def test_lineage_links_both_ways(finished) -> None:
    ws, result = finished
    import metaflow

    run = _client(ws).get_run(result.mlflow_run_id)
    assert run.data.tags[lineage.PATHSPEC] == result.pathspec
    assert run.data.tags[lineage.SOURCE_SHA256] == __import__("hashlib").sha256(FLOW.read_bytes()).hexdigest()
    assert run.data.tags[lineage.PYTHON].count(".") == 2
    metaflow.namespace(None)
    mf_run = metaflow.Run(result.pathspec)
    assert mf_run.successful
    assert f"{lineage.MLFLOW_RUN_TAG}:{result.mlflow_run_id}" in mf_run.tags
    assert mf_run["end"].task["_shipyard_run_id"].data == result.mlflow_run_id


def test_lineage_artifacts(finished, tmp_path: Path) -> None:
    ws, result = finished
    client = _client(ws)
    source = Path(client.download_artifacts(result.mlflow_run_id, lineage.SOURCE_ARTIFACT, str(tmp_path)))
    assert source.read_text() == FLOW.read_text()
    lock = Path(client.download_artifacts(result.mlflow_run_id, lineage.ENV_LOCK_ARTIFACT, str(tmp_path)))
    assert "mlflow==" in lock.read_text() and "metaflow==" in lock.read_text()


def test_result_object(finished) -> None:
    _, result = finished
    assert result.status == "FINISHED"
    assert result.metrics["final_accuracy"] == 0.93
    assert result.params["points"] == "150"
    assert result.artifacts["answer"] == 42


def test_failing_step_raises_flow_failed_and_keeps_its_metrics(workspace, mlflow_client) -> None:
    with pytest.raises(shipyard.FlowFailed) as info:
        shipyard.run(FLOW, points=120, fail_in="right")
    err = info.value
    assert err.step == "right"
    assert "ValueError: right step gave up after 120 points" in err.cause
    assert "right step gave up" in err.log_tail
    assert err.mlflow_run_id and err.pathspec.startswith("BranchingFlow/")
    run = mlflow_client.get_run(err.mlflow_run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[lineage.step_tag("right", "status")] == "failed"
    # every point logged before the error is stored
    history = mlflow_client.get_metric_history(err.mlflow_run_id, "right_progress")
    assert sorted(p.step for p in history) == list(range(120))


def test_running_something_that_is_not_a_flow_is_a_flow_error(workspace) -> None:
    with pytest.raises(shipyard.FlowError, match="needs a FlowSpec class or a flow file"):
        shipyard.run(42)
    with pytest.raises(shipyard.FlowError, match="No flow file"):
        shipyard.run(workspace.project_dir / "missing_flow.py")


def test_run_async_returns_at_once_and_can_be_awaited(workspace) -> None:
    import asyncio

    handle = shipyard.run_async(FLOW, points=10)
    assert not handle.done()
    result = asyncio.run(_await(handle))
    assert result.status == "FINISHED"
    assert handle.mlflow_run_id == result.mlflow_run_id
    assert handle.pathspec == result.pathspec


async def _await(handle):
    return await handle


UNTRACKED_FLOW = '''from pathlib import Path

from metaflow import FlowSpec, step


class UntrackedFlow(FlowSpec):
    @step
    def start(self):
        Path("untracked-step-ran").write_text("yes")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    UntrackedFlow()
'''


def _no_metaflow_run_of(ws, flow_name: str) -> bool:
    return not any(p.name == flow_name for p in ws.metaflow_root.rglob(flow_name))


def test_an_untracked_flow_is_refused_before_metaflow_starts_it(workspace, mlflow_client, monkeypatch) -> None:
    import importlib

    flow_file = workspace.project_dir / "untracked_flow.py"
    flow_file.write_text(UNTRACKED_FLOW, encoding="utf-8")
    monkeypatch.syspath_prepend(str(workspace.project_dir))
    flow_class = importlib.import_module("untracked_flow").UntrackedFlow
    for target, start in ((flow_file, shipyard.run), (flow_class, shipyard.run), (flow_class, shipyard.run_async)):
        with pytest.raises(shipyard.FlowError) as info:
            start(target)
        assert "UntrackedFlow" in info.value.message and "not tracked" in info.value.message
        assert "@shipyard.track" in info.value.hint
    assert not (workspace.project_dir / "untracked-step-ran").exists()
    assert _no_metaflow_run_of(workspace, "UntrackedFlow")
    assert mlflow_client.search_runs([e.experiment_id for e in mlflow_client.search_experiments()]) == []


SELF_STARTING_FLOW = '''from metaflow import FlowSpec, step

import shipyard


@shipyard.track
class SelfStartingFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    shipyard.run(__file__)  # should be SelfStartingFlow(): Metaflow runs this file to run the flow
'''


def test_a_flow_file_that_starts_itself_fails_once_instead_of_recursing(workspace) -> None:
    flow_file = workspace.project_dir / "self_starting_flow.py"
    flow_file.write_text(SELF_STARTING_FLOW, encoding="utf-8")
    with pytest.raises(shipyard.FlowError) as info:
        shipyard.run(flow_file)
    # the outer run reports what the inner one refused, with its fix, in seconds instead of never ending
    assert "starts its own run again" in info.value.message
    assert "End the flow file with `MyFlow()`" in info.value.message
    assert _no_metaflow_run_of(workspace, "SelfStartingFlow")


IMPORTING_FLOW = '''from metaflow import FlowSpec, step

import shipyard


@shipyard.track
class ImportingFlow(FlowSpec):
    @step
    def start(self):
        import caller_helper
        import env_helper

        shipyard.log_metric("from_callers_path", caller_helper.VALUE)
        shipyard.log_metric("from_pythonpath", env_helper.VALUE)
        self.next(self.end)

    @step
    def end(self):
        import caller_helper

        shipyard.log_metric("in_end", caller_helper.VALUE + 1)


if __name__ == "__main__":
    ImportingFlow()
'''


def test_steps_import_what_the_callers_path_and_pythonpath_provide(workspace, tmp_path, monkeypatch) -> None:
    flows = workspace.project_dir / "flows"
    flows.mkdir()
    (flows / "importing_flow.py").write_text(IMPORTING_FLOW, encoding="utf-8")
    src, env_dir = tmp_path / "src", tmp_path / "env"
    src.mkdir()
    env_dir.mkdir()
    (src / "caller_helper.py").write_text("VALUE = 7\n", encoding="utf-8")
    (env_dir / "env_helper.py").write_text("VALUE = 11\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(src))  # as a notebook's sys.path.insert(0, "src") does
    monkeypatch.setenv("PYTHONPATH", str(env_dir))  # set after start, so only the environment has it
    result = shipyard.run(flows / "importing_flow.py")
    assert result.metrics == {"from_callers_path": 7.0, "from_pythonpath": 11.0, "in_end": 8.0}


def test_the_step_import_path_keeps_the_callers_order_and_what_pythonpath_had(tmp_path, monkeypatch) -> None:
    import sysconfig

    from shipyard.flows._runner import step_import_path

    first, second, listed = (tmp_path / n for n in ("first", "second", "listed"))
    for d in (first, second, listed):
        d.mkdir()
    stdlib = sysconfig.get_paths()["stdlib"]
    monkeypatch.chdir(second)
    monkeypatch.setattr(sys, "path", [str(first), "", stdlib, str(tmp_path / "missing"), str(first), *sys.path])
    entries = step_import_path(f"{listed}{os.pathsep}{first}").split(os.pathsep)
    assert entries[:2] == [str(first), str(second)]
    assert entries[-1] == str(listed) and entries.count(str(first)) == 1
    assert stdlib not in entries and str(tmp_path / "missing") not in entries
    assert not any(p.rstrip("/").endswith("site-packages") for p in entries)
