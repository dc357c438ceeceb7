"""Creating, finding and finishing MLflow runs, with the lineage every run carries."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
    card: Mapping[str, str] | None = None,
) -> str:
    """Create the one MLflow run of a Metaflow run, with source lineage and parameters.

    ``card`` (``@shipyard.track(card=...)``) and a ``MODEL_CARD.md`` next to the
    flow file (or the notebook) are kept on the run for its model card.
    """
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
    if card_spec := _card_spec(card, source_file):
        client.log_dict(run_id, card_spec, lineage.MODEL_CARD_SPEC_ARTIFACT)
    if params:
        from mlflow.entities import Param

        client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    return run_id


MODEL_CARD_FILE = "MODEL_CARD.md"


def _card_spec(card: Mapping[str, str] | None, source_file: Path) -> dict[str, Any] | None:
    """What the flow declares for its model card: ``card=`` sections, and the MODEL_CARD.md beside it, as written.

    Q: Why read the file when the run starts, not when the card is made?
    A: The card is made at promotion, perhaps on another machine or after the
       file changed; the run keeps what its flow was trained with.
    """
    spec: dict[str, Any] = {"declared": dict(card or {})}
    notebook = os.environ.get("SHIPYARD_NOTEBOOK")
    for folder in ([Path(notebook).parent] if notebook else []) + [source_file.parent]:
        path = folder / MODEL_CARD_FILE
        if path.is_file():
            spec["file"] = {"name": MODEL_CARD_FILE, "text": path.read_text(encoding="utf-8")}
            break
    return spec if spec["declared"] or "file" in spec else None


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
