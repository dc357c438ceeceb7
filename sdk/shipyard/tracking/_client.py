"""MLflow clients and experiments for a workspace, and MLflow's errors as shipyard's.

The client holds the workspace's URIs; nothing here touches MLflow's
process-wide (fluent) state, so a user's own ``mlflow.*`` calls keep the store
they chose. The few MLflow calls that need that state go through
:func:`shipyard.tracking._mlflow.fluent_store`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from .._core.errors import TrackingError, TrackingUnavailable
from .._core.workspace import Workspace

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


@functools.lru_cache(maxsize=8)
def _client(tracking_uri: str, registry_uri: str) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)


def client_for(ws: Workspace) -> MlflowClient:
    """The MLflow client for ``ws`` (cached per URI pair); it changes no process-wide MLflow state."""
    return _client(ws.tracking_uri, ws.registry_uri)


def experiment_id(ws: Workspace, name: str) -> str:
    """Id of experiment ``name``, created with its artifacts inside the workspace when embedded."""
    from mlflow.exceptions import MlflowException

    client = client_for(ws)
    try:
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = (ws.artifacts_dir / name).as_uri() if ws.embedded else None
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # lost a race with another step: fine
                raise
            found = client.get_experiment_by_name(name)
            assert found is not None
            return found.experiment_id
    except MlflowException as exc:
        raise tracking_error(ws, exc) from exc


def tracking_error(ws: Workspace, exc: Exception) -> TrackingError:
    """Translate an MLflow error into the shipyard error that says what to do."""
    text = str(exc)
    if "Connection" in text or "Max retries" in text or "refused" in text:
        return TrackingUnavailable(
            f"The MLflow tracking backend at {ws.tracking_uri} cannot be reached: {text.splitlines()[0]}",
            hint="Start the tracking server or unset SHIPYARD_TRACKING_URI to use the embedded store.",
        )
    return TrackingError(f"MLflow refused the request: {text.splitlines()[0]}")

