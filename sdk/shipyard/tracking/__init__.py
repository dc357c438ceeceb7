"""Tracking: MLflow runs, buffered metric logging, datasets, models and lineage.

``log_metric`` only enqueues on the caller's thread; a background writer sends
batches and spools to the workspace when the tracker is unreachable. See
:mod:`shipyard.tracking._buffer` for the delivery guarantees.

Everything here talks to MLflow through the workspace's own client and leaves
MLflow's process-wide (fluent) URIs as the user set them; the one exception,
around a flavor's ``log_model``, puts them back (:mod:`._mlflow`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

from .._core.errors import TrackingUnavailable
from .._core.workspace import Workspace, current_workspace
from ._catalog import TrackedRun, get_run, runs
from ._context import ActiveRun, as_number, attach, check_name, current, current_or_none, detach
from ._datasets import DatasetInfo, log_dataset
from ._history import MetricFollower, MetricHistory, metric_history
from ._models import LoggedModel, download_model, load_model, log_model
from ._points import MetricPoint
from ._runs import create_run, finish_run

__all__ = [
    "ActiveRun",
    "DatasetInfo",
    "LoggedModel",
    "MetricFollower",
    "MetricHistory",
    "MetricPoint",
    "TrackedRun",
    "active_run_id",
    "download_model",
    "flush",
    "get_run",
    "log_dataset",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_params",
    "load_model",
    "metric_history",
    "runs",
    "start_run",
    "sync",
]


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Record one metric point on the active run. Returns at once; the write is buffered.

    Args:
        name: metric name, e.g. ``"val/accuracy"``.
        value: a number (int, float, numpy or torch scalar).
        step: training step or epoch; default: one more than the last step of ``name``.

    Raises:
        NoActiveRun: called outside a tracked step or ``start_run`` block.
        InvalidMetric: ``value`` is not a number or ``name`` is not a valid name.

    Example:
        >>> for epoch in range(10):                      # doctest: +SKIP
        ...     shipyard.log_metric("loss", loss, step=epoch)
    """
    run = current()
    check_name(name)
    if type(value) is not float:
        value = as_number(name, value)
    steps = run._next_step
    if step is None:
        step = steps.get(name, 0)
    steps[name] = step + 1
    run.buffer.put(name, step, value, int(time.time() * 1000))


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Record several metric points at once (same rules as :func:`log_metric`)."""
    for name, value in metrics.items():
        log_metric(name, value, step)


def log_params(params: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
    """Record parameters of the active run (values are stored as text).

    Example:
        >>> shipyard.log_params(learning_rate=0.1, depth=4)   # doctest: +SKIP
    """
    run = current()
    merged = {**(params or {}), **kwargs}
    for key in merged:
        check_name(key, "param")
    run.buffer.put_params({k: str(v)[:6000] for k, v in merged.items()})


def flush(timeout: float | None = None) -> None:
    """Block until every point logged so far is sent to the tracker or spooled to disk."""
    run = current()
    run.buffer.flush(timeout if timeout is not None else run.workspace.settings.flush_timeout)


def active_run_id() -> str | None:
    """MLflow run id of the active run, or None outside a run."""
    run = current_or_none()
    return run.run_id if run else None


@contextlib.contextmanager
def start_run(
    experiment: str = "default",
    *,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    workspace: Workspace | None = None,
) -> Iterator[ActiveRun]:
    """Track a block of script code as one MLflow run (flows get this from ``@shipyard.track``).

    Everything logged in the block is durable when it exits, also when it raises.

    Example:
        >>> with shipyard.start_run("experiments") as run:   # doctest: +SKIP
        ...     shipyard.log_metric("loss", 0.3)
    """
    ws = workspace or current_workspace()
    run_id = create_run(ws, experiment, run_name=run_name, tags=dict(tags or {}))
    active = attach(ws, run_id)
    status = "FAILED"
    try:
        yield active
        status = "FINISHED"
    finally:
        try:
            active.close()
        finally:
            detach(active)
            finish_run(ws, run_id, status)


def sync(workspace: Workspace | None = None) -> int:
    """Replay every spooled batch of the workspace to the tracker; return how many were sent.

    Raises:
        TrackingUnavailable: the tracker still cannot be reached (the batches stay on disk).
    """
    from ._buffer import Spool, replay
    from ._client import client_for

    ws = workspace or current_workspace()
    sent = 0
    if not ws.spool_dir.is_dir():
        return 0
    client = client_for(ws)
    for run_dir in sorted(p for p in ws.spool_dir.iterdir() if p.is_dir()):
        try:
            sent += replay(client, run_dir.name, Spool(run_dir))
        except Exception as exc:
            raise TrackingUnavailable(
                f"{len(Spool(run_dir).pending())} spooled batches of run {run_dir.name} could not be sent: {exc}",
                hint="Start the tracking server, then run `shipyard sync` again; nothing has been lost.",
            ) from exc
    return sent
