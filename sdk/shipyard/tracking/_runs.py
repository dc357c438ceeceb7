"""Creating, finding and finishing MLflow runs, with the lineage every run carries."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .._core import lineage
from .._core.hashing import sha256_text
from .._core.workspace import Workspace
from ._client import client_for, experiment_id, tracking_error
from ._environment import environment_lock, git_state, python_version


def create_run(ws: Workspace, experiment: str, *, run_name: str | None = None, tags: dict[str, str]) -> str:
    """Create an MLflow run carrying the environment lineage; return its id."""
    from mlflow.exceptions import MlflowException

    lock = environment_lock()
    all_tags = {
        lineage.MANAGED: "true",
        lineage.PYTHON: python_version(),
        lineage.ENV_LOCK_SHA256: sha256_text(lock),
        lineage.MLFLOW_USER: ws.author,
        **_git_tags(ws.project_dir),
        **tags,
    }
    if run_name:
        all_tags[lineage.MLFLOW_RUN_NAME] = run_name
    client = client_for(ws)
    try:
        run = client.create_run(experiment_id(ws, ws.settings.experiment or experiment), tags=all_tags, run_name=run_name)
        client.log_text(run.info.run_id, lock, lineage.ENV_LOCK_ARTIFACT)
    except MlflowException as exc:
        raise tracking_error(ws, exc) from exc
    return run.info.run_id


def create_flow_run(
    ws: Workspace,
    *,
    flow_name: str,
    pathspec: str,
    source_file: Path,
    experiment: str | None,
    params: Mapping[str, str],
) -> str:
    """Create the one MLflow run of a Metaflow run, with source lineage and parameters."""
    source_path = Path(os.environ.get("SHIPYARD_CELL_SOURCE") or source_file)
    source = source_path.read_text(encoding="utf-8") if source_path.is_file() else ""
    kind = os.environ.get("SHIPYARD_SOURCE_KIND", "file")
    tags = {
        lineage.FLOW: flow_name,
        lineage.PATHSPEC: pathspec,
        lineage.SOURCE_SHA256: sha256_text(source),
        lineage.SOURCE_KIND: kind,
        lineage.MLFLOW_SOURCE_NAME: os.environ.get("SHIPYARD_NOTEBOOK") or str(source_file),
        lineage.MLFLOW_SOURCE_TYPE: "NOTEBOOK" if kind == "notebook-cell" else "LOCAL",
    }
    if notebook := os.environ.get("SHIPYARD_NOTEBOOK"):
        tags[lineage.NOTEBOOK] = notebook
    run_id = create_run(ws, experiment or flow_name, run_name=pathspec.replace("/", "-"), tags=tags)
    client = client_for(ws)
    client.log_text(run_id, source, lineage.SOURCE_ARTIFACT)
    if params:
        from mlflow.entities import Param

        client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    return run_id


def find_flow_run(ws: Workspace, pathspec: str) -> str | None:
    """MLflow run id recorded for Metaflow run ``pathspec`` (``Flow/run_id``), if any."""
    client = client_for(ws)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return None
    runs = client.search_runs(
        experiments, filter_string=f"tags.`{lineage.PATHSPEC}` = '{pathspec}'", max_results=1
    )
    return runs[0].info.run_id if runs else None


def finish_run(ws: Workspace, run_id: str, status: str) -> None:
    from mlflow.exceptions import MlflowException

    from . import _live

    try:
        client_for(ws).set_terminated(run_id, status)
    except MlflowException as exc:  # the run's data is safe; only its end state is missing
        raise tracking_error(ws, exc) from exc
    _live.remove(ws.live_dir, run_id)


def _git_tags(path: Path) -> dict[str, str]:
    state = git_state(path)
    if state is None:
        return {}
    commit, dirty = state
    return {lineage.GIT_COMMIT: commit, lineage.GIT_DIRTY: str(dirty).lower(), lineage.MLFLOW_GIT_COMMIT: commit}
