"""The MLflow adapter (``shipyard.tracking._mlflow``) against the installed MLflow and a real sqlite store.

Each reach into MLflow's private API or process-wide state is exercised for
real, so an MLflow release that moves one fails here, and the version test
says whether the installed MLflow is one the adapter was written for.
"""

from __future__ import annotations

import os
import threading
import time
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import shipyard
from shipyard.tracking import _mlflow
from shipyard.tracking._client import client_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fluent_state_put_back():
    """Every test here changes MLflow's fluent URIs on purpose; none leaks them into the next test."""
    before = _mlflow.fluent_state()
    yield
    _mlflow.restore_fluent_state(before)


def test_the_installed_mlflow_is_one_the_adapter_was_written_for() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    supported = Requirement(_mlflow.SUPPORTED)
    assert any(Requirement(d).name == "mlflow" and Requirement(d).specifier == supported.specifier for d in declared), (
        f"pyproject.toml and the adapter disagree on the MLflow versions ({_mlflow.SUPPORTED})"
    )
    installed = metadata.version("mlflow")
    assert supported.specifier.contains(installed), (
        f"mlflow {installed} is installed; shipyard.tracking._mlflow was written for {_mlflow.SUPPORTED}: "
        "check each reach in it against this release, then widen SUPPORTED and pyproject.toml together"
    )


def _environment() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in _mlflow.URI_VARIABLES}


@pytest.mark.parametrize("before", ["never set", "environment only", "set by the user"])
def test_fluent_store_points_mlflow_at_the_workspace_and_restores_exactly(
    workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: str
) -> None:
    import mlflow

    users = f"sqlite:///{tmp_path / 'users.db'}"
    _mlflow.restore_fluent_state(_mlflow.FluentState(None, None, tuple((n, None) for n in _mlflow.URI_VARIABLES)))
    if before == "environment only":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", users)
    elif before == "set by the user":
        mlflow.set_tracking_uri(users)
        mlflow.set_registry_uri(users)
    state, environment = _mlflow.fluent_state(), _environment()
    resolved = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())

    with _mlflow.fluent_store(workspace):
        assert mlflow.get_tracking_uri() == workspace.tracking_uri
        assert mlflow.get_registry_uri() == workspace.registry_uri
        assert os.environ["MLFLOW_TRACKING_URI"] == workspace.tracking_uri  # what MLflow hands subprocesses

    assert _mlflow.fluent_state() == state
    assert _environment() == environment
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == resolved
    if before == "environment only":  # still read from the environment, not pinned: a later change is followed
        monkeypatch.setenv("MLFLOW_TRACKING_URI", users + "-moved")
        assert mlflow.get_tracking_uri() == users + "-moved"


def test_fluent_store_restores_when_the_block_raises_and_nests(workspace, tmp_path: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'users.db'}")
    state = _mlflow.fluent_state()
    with pytest.raises(RuntimeError, match="inside"):
        with _mlflow.fluent_store(workspace):
            with _mlflow.fluent_store(workspace):  # the same thread may open a block inside a block
                assert mlflow.get_tracking_uri() == workspace.tracking_uri
            assert mlflow.get_tracking_uri() == workspace.tracking_uri
            raise RuntimeError("inside")
    assert _mlflow.fluent_state() == state


def test_fluent_store_blocks_of_two_threads_take_turns(project: Path, tmp_path: Path) -> None:
    import mlflow

    first = shipyard.init(project_dir=project)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    second = shipyard.init(project_dir=other_dir)
    inside = threading.Event()
    seen: list[str] = []
    entered: dict[str, float] = {}

    def hold_first() -> None:
        with _mlflow.fluent_store(first):
            inside.set()
            for _ in range(20):
                seen.append(mlflow.get_tracking_uri())
                time.sleep(0.01)
            entered["first left"] = time.monotonic()

    holder = threading.Thread(target=hold_first)
    holder.start()
    inside.wait(5)
    with _mlflow.fluent_store(second):
        entered["second entered"] = time.monotonic()
        assert mlflow.get_tracking_uri() == second.tracking_uri
    holder.join(5)
    assert set(seen) == {first.tracking_uri}
    assert entered["second entered"] >= entered["first left"]


def test_metric_history_page_pages_in_stored_order_with_tokens(workspace) -> None:
    from mlflow.entities import Metric

    client = client_for(workspace)
    experiment = client.create_experiment("paging", artifact_location=(workspace.artifacts_dir / "paging").as_uri())
    run_id = client.create_run(experiment).info.run_id
    client.log_batch(run_id, metrics=[Metric("loss", 1.0 / (i + 1), 1_700_000_000_000 + i, i) for i in range(120)])

    pages, token = [], None
    while True:
        page = _mlflow.metric_history_page(client, run_id, "loss", max_results=50, page_token=token)
        pages.append([(m.step, m.value, m.timestamp) for m in page])
        token = page.token
        if token is None:
            break
    assert [len(p) for p in pages] == [50, 50, 20]
    everything = [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, "loss")]
    assert [point for page in pages for point in page] == everything


def test_dataset_entity_is_what_log_inputs_takes(workspace) -> None:
    import mlflow.data
    import pandas as pd
    from mlflow.entities import Dataset, DatasetInput

    client = client_for(workspace)
    experiment = client.create_experiment("inputs", artifact_location=(workspace.artifacts_dir / "inputs").as_uri())
    run_id = client.create_run(experiment).info.run_id
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": ["a", "b", "a"]})
    entity = _mlflow.dataset_entity(mlflow.data.from_pandas(frame, name="train", digest="0123456789abcdef"))
    assert isinstance(entity, Dataset)
    client.log_inputs(run_id, datasets=[DatasetInput(entity)])
    (stored,) = client.get_run(run_id).inputs.dataset_inputs
    assert (stored.dataset.name, stored.dataset.digest) == ("train", "0123456789abcdef")
    assert "x" in stored.dataset.schema
