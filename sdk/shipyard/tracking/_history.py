"""Reading a run's metric history back: every point of every metric, for charts and live views.

Q: Why not keep the points the notebook logged in memory?
A: The points are written by step processes, other kernels or other machines;
   MLflow is the one place that has all of them, also after a kernel restart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .._core.errors import TrackingError
from .._core.workspace import Workspace, current_workspace
from . import _live
from ._mlflow import metric_history_page
from ._points import MetricPoint, from_mlflow


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
        return self.status in _RUNNING

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
    ws = workspace or current_workspace()
    with _tracker_errors(ws, run_id):
        client = _client(ws)
        if run_id is None:
            run = _newest_run(client)
            if run is None:
                return None
        else:
            run = client.get_run(run_id)
        wanted = list(names) if names is not None else sorted(run.data.metrics)
        series = {name: _ordered(client.get_metric_history(run.info.run_id, name)) for name in wanted}
    return _history(run, series)


class MetricFollower:
    """Reads a growing run's metric history, fetching only the points added since the last read.

    :func:`metric_history` reads every point on every call: fine once, but a live
    chart polling a long run every second would re-read (and re-parse) the whole
    history each time. A follower keeps what it has read. While the run goes on
    it reads the run's live log on this machine (see :mod:`._live`), or, for a
    run logging elsewhere, MLflow's history from the last page onwards; once the
    run has ended it reads the run's final state from MLflow, the record.

    Example:
        >>> follower = shipyard.tracking.MetricFollower(run_id)    # doctest: +SKIP
        >>> while follower.read().running: time.sleep(1)           # doctest: +SKIP
    """

    # Q: Why re-read the last page instead of asking MLflow for "points after step N"?
    # A: MLflow has no such query. It pages a metric's history in its stored
    #    order (time, step, value); every page but the last is full, so pages
    #    already read never change unless a point with an older timestamp
    #    arrives late (another process's buffer). The re-read last page must
    #    start with the points already held; if it does not, the metric is read
    #    again from the start. Never stale, never a point counted twice.
    page_size = 50  # the re-read per poll; a first read of a long run costs one query per page
    status_every = 10  # reads between run status checks while new points keep arriving live (a pause checks at once)

    def __init__(self, run_id: str, *, workspace: Workspace | None = None) -> None:
        self.run_id = run_id
        self._ws = workspace or current_workspace()
        self._run: Any = None
        self._since_status = 0
        self._tail: Any = None
        self._live: dict[str, list[MetricPoint]] = {}  # from the live log, by step, then time
        self._stored: dict[str, list[MetricPoint]] = {}  # from MLflow's pages, in its order
        self._tokens: dict[str, list[Any]] = {}  # page start tokens; page k starts at k * page_size
        self._paged: dict[str, list[MetricPoint]] = {}  # from MLflow's pages, by step, then time
        self._final: MetricHistory | None = None
        self.queries = 0  # tracker calls made: what the reads cost

    def read(self) -> MetricHistory:
        """The run's status and every point so far.

        Raises:
            TrackingError: the run does not exist or the tracker could not be read.
        """
        if self._final is not None:
            return self._final
        with _tracker_errors(self._ws, self.run_id):
            client = _client(self._ws)
            if self._tail is None:
                self._tail = _live.LiveTail.for_run(self._ws.live_dir, self.run_id)
            added = self._tail.read() if self._tail else None
            if self._run is None or not added or self._since_status >= self.status_every:
                self._run, self._since_status = client.get_run(self.run_id), 0
                self.queries += 1
            else:
                self._since_status += 1
            run = self._run
            if run.info.status not in _RUNNING:
                self._final = _history(run, self._full(client, sorted(run.data.metrics)))
                return self._final
            if added is not None:
                for name, points in added.items():
                    _merge(self._live.setdefault(name, []), points)
                return _history(run, {name: tuple(points) for name, points in sorted(self._live.items())})
            names = sorted(run.data.metrics)
            for name in names:
                self._update(client, name)
        return _history(run, {name: tuple(self._paged[name]) for name in names})

    def _full(self, client: Any, names: list[str]) -> dict[str, tuple[MetricPoint, ...]]:
        self.queries += len(names)
        return {name: _ordered(client.get_metric_history(self.run_id, name)) for name in names}

    def _update(self, client: Any, name: str) -> None:
        """Fetch the pages of ``name`` from the last one held onwards."""
        stored = self._stored.setdefault(name, [])
        tokens = self._tokens.setdefault(name, [None])
        page = min(len(stored) // self.page_size, len(tokens) - 1)  # an exactly full last page has no next token
        start = page * self.page_size
        token = tokens[page]
        fetched: list[MetricPoint] = []
        while True:
            result = metric_history_page(client, self.run_id, name, max_results=self.page_size, page_token=token)
            self.queries += 1
            fetched.extend(from_mlflow(m) for m in result)
            token = result.token
            if token is None:
                break
            tokens.append(token)
        held = len(stored) - start
        if fetched[:held] != stored[start:]:  # a late point landed in a page already read: start over
            del stored[:], tokens[1:]
            self._paged[name] = []
            self._update(client, name)
            return
        added = fetched[held:]
        stored.extend(added)
        _merge(self._paged.setdefault(name, []), added)


_RUNNING = frozenset({"RUNNING", "SCHEDULED"})


def _merge(ordered: list[MetricPoint], added: list[MetricPoint]) -> None:
    """Add ``added`` to ``ordered`` (by step, then time); an append when they come after it, as they mostly do."""
    if not added:
        return
    if ordered and min(_order(p) for p in added) < _order(ordered[-1]):
        ordered.extend(added)
        ordered.sort(key=_order)
    else:
        ordered.extend(sorted(added, key=_order))


def _order(point: MetricPoint) -> tuple[int, int]:
    return point.step, point.timestamp


def _client(ws: Workspace) -> Any:
    from ._client import client_for

    return client_for(ws)


@contextlib.contextmanager
def _tracker_errors(ws: Workspace, run_id: str | None) -> Iterator[None]:
    """MLflow's errors, as the TrackingError a user can act on."""
    from mlflow.exceptions import MlflowException

    from ._client import tracking_error

    try:
        yield
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
            raise TrackingError(
                f"No run {run_id!r} in {ws.tracking_uri}.",
                hint="Pass the MLflow run id of a tracked run, e.g. shipyard.run(Flow).mlflow_run_id.",
            ) from exc
        raise tracking_error(ws, exc) from exc


def _ordered(points: Iterable[Any]) -> tuple[MetricPoint, ...]:
    """Points ordered by step, then time (MLflow stores them by time)."""
    return tuple(sorted((from_mlflow(p) for p in points), key=_order))


def _history(run: Any, series: dict[str, tuple[MetricPoint, ...]]) -> MetricHistory:
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
