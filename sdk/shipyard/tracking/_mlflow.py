"""The MLflow adapter: every use shipyard makes of MLflow's process-wide state and private API.

Everything else in shipyard talks to MLflow through the workspace's explicit
``MlflowClient`` (:func:`shipyard.tracking._client.client_for`), which changes
no global state. What cannot be done that way is here, each with why, and
``tests/integration/test_adapters_mlflow.py`` runs each of them against a real
store and fails when the installed MLflow is outside :data:`SUPPORTED`, the
range this was written and checked for:

* :func:`fluent_store` — MLflow's process-wide tracking and registry URIs,
  set for one block and then put back exactly as they were
  (:func:`fluent_state` reads them as set, from MLflow's module globals);
* :func:`metric_history_page` — one page of a metric's history
  (``MlflowClient._tracking_client.store``);
* :func:`dataset_entity` — the tracking entity of an ``mlflow.data`` dataset
  (``Dataset._to_mlflow_entity``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.entities import Dataset as DatasetEntity
    from mlflow.entities import Metric
    from mlflow.store.entities.paged_list import PagedList
    from mlflow.tracking import MlflowClient

    from .._core.workspace import Workspace

SUPPORTED = "mlflow>=3.5,<4"
"""The MLflow versions this adapter was written for (as in ``pyproject.toml``)."""

# what mlflow.set_tracking_uri / set_registry_uri also write, so that subprocesses inherit the URIs
URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")

# Q: Why a re-entrant lock?
# A: The URIs are one per process, so two shipyard threads pointing them at two
#    workspaces must take turns; and a block may run code that opens another
#    block on the same thread, which must not wait for itself.
_fluent_lock = threading.RLock()


@dataclass(frozen=True)
class FluentState:
    """MLflow's process-wide URIs as they are set: what :func:`fluent_store` puts back.

    Attributes:
        tracking_uri: what ``mlflow.set_tracking_uri`` set; None when never set
            (MLflow then reads ``MLFLOW_TRACKING_URI`` or its default).
        registry_uri: likewise for ``mlflow.set_registry_uri``.
        environment: ``MLFLOW_TRACKING_URI`` and ``MLFLOW_REGISTRY_URI`` in ``os.environ`` (None: unset).
    """

    tracking_uri: str | None
    registry_uri: str | None
    environment: tuple[tuple[str, str | None], ...]


def fluent_state() -> FluentState:
    """The URIs MLflow's fluent API uses now, as set (not as resolved).

    Q: Why read MLflow's module globals?
    A: "Never set" is only visible there: ``mlflow.get_tracking_uri()``
       answers with the environment or the default instead, and restoring
       that answer would pin it, so a later change of the environment
       variable would no longer be followed.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return FluentState(
        tracking_uri=tracking_utils._tracking_uri,  # noqa: SLF001 - see above
        registry_uri=registry_utils._registry_uri,  # noqa: SLF001 - see above
        environment=tuple((name, os.environ.get(name)) for name in URI_VARIABLES),
    )


def restore_fluent_state(state: FluentState) -> None:
    """Put MLflow's fluent URIs (and their environment variables) back to ``state``."""
    import mlflow

    mlflow.set_tracking_uri(state.tracking_uri)  # type: ignore[arg-type] - None: back to "never set"
    mlflow.set_registry_uri(state.registry_uri)  # type: ignore[arg-type]
    for name, value in state.environment:  # the setters write (and unset) these: put them back as found
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextlib.contextmanager
def fluent_store(ws: Workspace) -> Iterator[None]:
    """Point MLflow's fluent API at ``ws``'s store for the block, then restore exactly what was there.

    Q: Which MLflow calls need it?
    A: Those that find their store through the process-wide URIs and take no
       client or URI of their own: a flavor's ``log_model`` (``Model.log``
       builds its ``MlflowClient`` from the fluent tracking URI and registers
       through the fluent registry), and the SQL registry store's
       ``create_model_version`` of a ``models:/m-…`` source (it looks the
       logged model up with a bare ``MlflowClient()``). Downloads do not:
       :func:`shipyard.tracking.download_model` resolves ``models:/`` URIs with
       the workspace's client.

    Q: What exactly is restored?
    A: The :class:`FluentState`: the URIs as ``mlflow.set_tracking_uri`` and
       ``set_registry_uri`` left them, "never set" included, and the two
       environment variables those setters write for subprocesses.

    Q: What can it not prevent?
    A: While the block runs, a user's own ``mlflow.*`` call on another thread
       sees the workspace's store: the URIs are MLflow's, and process-wide.
       Shipyard opens a block only around a call that needs it.

    Example:
        >>> with fluent_store(ws):                                    # doctest: +SKIP
        ...     mlflow.sklearn.log_model(model, name="model", run_id=run_id)
    """
    import mlflow

    with _fluent_lock:
        before = fluent_state()
        try:
            mlflow.set_tracking_uri(ws.tracking_uri)
            mlflow.set_registry_uri(ws.registry_uri)
            yield
        finally:
            restore_fluent_state(before)


def metric_history_page(
    client: MlflowClient, run_id: str, key: str, *, max_results: int, page_token: str | None
) -> PagedList[Metric]:
    """One page of ``key``'s history in MLflow's stored order; its ``token`` is the next page's (None: the last).

    Q: Why through the client's store?
    A: ``MlflowClient.get_metric_history`` has no paging arguments: it reads
       the whole history on every call. Only the store's method (SQL and REST
       alike) takes ``max_results`` and ``page_token``, and a live view that
       polls a long run must not re-read it all each second.
    """
    store = client._tracking_client.store  # noqa: SLF001 - the paged history call lives on the store
    return store.get_metric_history(run_id, key, max_results=max_results, page_token=page_token)


def dataset_entity(dataset: Any) -> DatasetEntity:
    """The tracking entity of an ``mlflow.data`` dataset, for ``MlflowClient.log_inputs``.

    Q: Why the private method?
    A: The client logs inputs as entities, and only the dataset builds its own
       entity (source type, source, schema, profile); the public way,
       ``mlflow.log_input``, logs to the fluent active run, which a shipyard
       run is not.
    """
    return dataset._to_mlflow_entity()  # noqa: SLF001 - see above
