"""Reading a run's metric history back: every point of every metric, for charts and live views.

Q: Why not keep the points the notebook logged in memory?
A: The points are written by step processes, other kernels or other machines;
   MLflow is the one place that has all of them, also after a kernel restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._core.errors import TrackingError
from .._core.workspace import Workspace, current_workspace


@dataclass(frozen=True)
class MetricPoint:
    """One logged value: ``step``, ``value`` and ``timestamp`` (milliseconds since the epoch)."""

    step: int
    value: float
    timestamp: int


@dataclass(frozen=True)
class MetricHistory:
    """Every point of a run's metrics, as stored in MLflow.

    Attributes:
        run_id: the MLflow run.
        status: MLflow run status (``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED``).
        experiment_id: the run's experiment.
        run_name: the run's name ("" when it has none).
        start_time: run start, milliseconds since the epoch (None when unknown).
        metrics: metric name → points ordered by step, then time.

    Example:
        >>> history = shipyard.metric_history(result.mlflow_run_id)    # doctest: +SKIP
        >>> [p.value for p in history.metrics["val/accuracy"]][-3:]    # doctest: +SKIP
        [0.951, 0.958, 0.958]
    """

    run_id: str
    status: str
    experiment_id: str
    run_name: str = ""
    start_time: int | None = None
    metrics: dict[str, tuple[MetricPoint, ...]] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        """True while the run has not ended."""
        return self.status in {"RUNNING", "SCHEDULED"}

    @property
    def points(self) -> int:
        """How many points there are, over all metrics."""
        return sum(len(p) for p in self.metrics.values())

    def fingerprint(self) -> tuple[Any, ...]:
        """Changes whenever a point is added or the status changes: cheap to compare between polls."""
        return (
            self.run_id,
            self.status,
            tuple((name, len(pts), pts[-1].step, pts[-1].value) for name, pts in sorted(self.metrics.items()) if pts),
        )


def metric_history(
    run_id: str | None = None,
    names: list[str] | tuple[str, ...] | None = None,
    *,
    workspace: Workspace | None = None,
) -> MetricHistory | None:
    """Read the full history of a run's metrics from the tracker.

    Args:
        run_id: MLflow run id (``RunResult.mlflow_run_id``, ``FlowRun.mlflow_run_id``);
            None: the most recently started run of the workspace.
        names: only these metrics; default: every metric the run has.

    Returns:
        The history, or None when ``run_id`` is None and the workspace has no run yet.

    Raises:
        TrackingError: the run does not exist or the tracker could not be read.

    Example:
        >>> h = shipyard.metric_history(result.mlflow_run_id, ["train/log_loss"])   # doctest: +SKIP
        >>> h.status, len(h.metrics["train/log_loss"])                              # doctest: +SKIP
        ('FINISHED', 20)
    """
    from mlflow.exceptions import MlflowException

    from ._client import client_for, tracking_error

    ws = workspace or current_workspace()
    client = client_for(ws)
    try:
        if run_id is None:
            run = _newest_run(client)
            if run is None:
                return None
        else:
            run = client.get_run(run_id)
        wanted = list(names) if names is not None else sorted(run.data.metrics)
        series: dict[str, tuple[MetricPoint, ...]] = {}
        for name in wanted:
            points = client.get_metric_history(run.info.run_id, name)
            series[name] = tuple(
                sorted(
                    (MetricPoint(int(p.step), float(p.value), int(p.timestamp)) for p in points),
                    key=lambda p: (p.step, p.timestamp),
                )
            )
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
            raise TrackingError(
                f"No run {run_id!r} in {ws.tracking_uri}.",
                hint="Pass the MLflow run id of a tracked run, e.g. shipyard.run(Flow).mlflow_run_id.",
            ) from exc
        raise tracking_error(ws, exc) from exc
    return MetricHistory(
        run_id=run.info.run_id,
        status=run.info.status,
        experiment_id=str(run.info.experiment_id),
        run_name=run.info.run_name or "",
        start_time=run.info.start_time,
        metrics=series,
    )


def _newest_run(client: Any) -> Any:
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return None
    runs = client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None
