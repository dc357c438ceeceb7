"""The catalogue of tracked runs: listing recent runs and finding one by what a user calls it.

Owns :class:`TrackedRun`, the read-only record of one MLflow run as shipyard
shows it, and the one resolver of the names a user types for a run (a run
id, a unique prefix of one, or the Metaflow pathspec ``Flow/123``).
``shipyard runs`` and ``shipyard show`` print what :func:`runs` and
:func:`get_run` return; neither holds MLflow client code of its own.

Q: Why a new record instead of handing out MLflow's ``Run``?
A: MLflow's entities change shape between releases and need a client to
   follow (experiment names, artifacts). A frozen record with the lineage
   already read (:class:`~shipyard.Lineage`) is what a notebook, the CLI and
   a type checker can rely on.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .._core import lineage as _tags  # the tag names; "lineage" is a field of TrackedRun
from .._core.errors import TrackingError
from .._core.lineage import Lineage
from .._core.workspace import Workspace, current_workspace
from ._history import MetricHistory, metric_history

# A Metaflow pathspec names a run as ``FlowName/run_id``. Anything else with a
# slash (or with quotes, which would break MLflow's filter syntax) names no run.
_PATHSPEC = re.compile(r"^[^/\s'\"`]+/[^/\s'\"`]+$")
_HEX = re.compile(r"^[0-9a-f]+$")
_SHOWN_MATCHES = 5
_NOT_FOUND_HINT = "List runs with `shipyard runs` (or shipyard.runs()); pass a run id, a prefix of one, or Flow/run_id."


@dataclass(frozen=True)
class TrackedRun:
    """One MLflow run as shipyard shows it: status, parameters, last metric values, tags and lineage.

    Attributes:
        run_id: the MLflow run id.
        experiment: name of the run's MLflow experiment (the flow name for flows).
        status: MLflow run status (``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED``).
        start_time: when the run started (UTC), or None when MLflow has no start time.
        params: parameter name → value (MLflow stores them as text).
        metrics: metric name → its last logged value.
        tags: every tag of the run, MLflow's and shipyard's.
        artifact_uri: where the run's artifacts are stored.
        run_name: the run's name ("" when it has none).
        lineage: where the run came from, read from its tags.

    Example:
        >>> run = shipyard.get_run("TrainFlow/12")              # doctest: +SKIP
        >>> run.status, run.metrics["accuracy"], run.lineage.pathspec   # doctest: +SKIP
        ('FINISHED', 0.958, 'TrainFlow/12')
    """

    run_id: str
    experiment: str
    status: str
    start_time: datetime | None = None
    # Mutable values: left out of the hash (equal runs still hash equal), so a run can go in a set.
    params: dict[str, str] = field(default_factory=dict, hash=False)
    metrics: dict[str, float] = field(default_factory=dict, hash=False)
    tags: dict[str, str] = field(default_factory=dict, hash=False)
    artifact_uri: str = ""
    run_name: str = ""
    lineage: Lineage = field(default_factory=Lineage)
    # The workspace the run was read from, so the methods below read the same store.
    _workspace: Workspace | None = field(default=None, repr=False, compare=False, hash=False)

    @property
    def shipyard_tags(self) -> dict[str, str]:
        """The tags shipyard wrote (``shipyard.*``: lineage, steps, datasets, models, gates)."""
        return {key: value for key, value in self.tags.items() if key.startswith(_tags.PREFIX)}

    @property
    def source_kind(self) -> str:
        """How the flow's source was given (``file``, ``notebook-cell``); "" for a run without a flow."""
        return self.tags.get(_tags.SOURCE_KIND, "")

    def metric_history(self, names: list[str] | tuple[str, ...] | None = None) -> MetricHistory:
        """Every logged point of the run's metrics (see :func:`shipyard.metric_history`).

        Raises:
            TrackingError: the run is gone or the tracker could not be read.

        Example:
            >>> points = shipyard.get_run(run_id).metric_history().metrics["loss"]   # doctest: +SKIP
            >>> points[0].value, points[-1].value                                    # doctest: +SKIP
            (0.69, 0.12)
        """
        history = metric_history(self.run_id, names, workspace=self._workspace)
        assert history is not None  # only a missing run_id gives None
        return history

    def artifacts(self) -> list[str]:
        """Paths of every artifact file of the run, depth first, relative to :attr:`artifact_uri`.

        Raises:
            TrackingError: the artifact store could not be read.

        Example:
            >>> shipyard.get_run(run_id).artifacts()                   # doctest: +SKIP
            ['lineage/requirements.lock.txt', 'model/MLmodel', ...]
        """
        ws = self._workspace or current_workspace()
        with _tracker_errors(ws):
            return _artifact_files(_client(ws), self.run_id)


def runs(limit: int = 20, experiment: str | None = None, *, workspace: Workspace | None = None) -> list[TrackedRun]:
    """The most recent runs shipyard tracked, newest first.

    Args:
        limit: at most this many runs.
        experiment: only runs of this MLflow experiment (for flows: the flow name); an
            experiment that does not exist has no runs.
        workspace: the workspace to read; default: the current one.

    Raises:
        TrackingError: the tracker could not be read (``TrackingUnavailable`` when it cannot be reached).

    Example:
        >>> [(r.run_id[:8], r.metrics.get("accuracy")) for r in shipyard.runs(3)]   # doctest: +SKIP
        [('3f2a9c01', 0.958), ('0b7d44e2', 0.951), ('c1d2e3f4', None)]
    """
    ws = workspace or current_workspace()
    with _tracker_errors(ws):
        client = _client(ws)
        experiments = {e.experiment_id: e.name for e in client.search_experiments()}
        if experiment is not None:
            experiments = {key: name for key, name in experiments.items() if name == experiment}
        if not experiments:
            return []
        found = client.search_runs(
            list(experiments),
            filter_string=f"tags.`{_tags.MANAGED}` = 'true'",
            max_results=limit,
            order_by=["attributes.start_time DESC"],
        )
        return [_tracked(run, experiments.get(run.info.experiment_id, ""), ws) for run in found]


def get_run(ref: str, *, workspace: Workspace | None = None) -> TrackedRun:
    """The tracked run that ``ref`` names.

    Args:
        ref: an MLflow run id, a prefix of one that no other run shares, or the
            Metaflow pathspec of a flow run (``Flow/run_id``).
        workspace: the workspace to read; default: the current one.

    Raises:
        TrackingError: no run matches ``ref``, or a prefix matches more than one run
            (``TrackingUnavailable`` when the tracker cannot be reached).

    Example:
        >>> shipyard.get_run("3f2a9c").run_id                       # doctest: +SKIP
        '3f2a9c0144b8479ab3b0e1b1c3d5e7f9'
        >>> shipyard.get_run("TrainFlow/12").lineage.pathspec        # doctest: +SKIP
        'TrainFlow/12'
    """
    ws = workspace or current_workspace()
    text = str(ref).strip()
    with _tracker_errors(ws):
        client = _client(ws)
        run = _find(client, ws, text)
        return _tracked(run, client.get_experiment(run.info.experiment_id).name, ws)


def _find(client: Any, ws: Workspace, text: str) -> Any:
    """The MLflow run ``text`` names (see :func:`get_run`), or a TrackingError saying why there is none."""
    if "/" in text:
        from ._runs import find_flow_run

        run_id = find_flow_run(ws, text) if _PATHSPEC.match(text) else None
        if run_id is None:
            raise _not_found(text)
        return client.get_run(run_id)
    if not text:
        raise _not_found(text)
    exact = _run_or_none(client, text)
    if exact is not None:
        return exact
    prefix = text.lower()
    matches = _runs_with_prefix(client, prefix) if _HEX.match(prefix) else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(run.info.run_id for run in matches[:_SHOWN_MATCHES])
        more = " and more" if len(matches) > _SHOWN_MATCHES else ""
        raise TrackingError(
            f"{text!r} is the start of more than one run id: {shown}{more}.",
            hint="Pass more characters of the run id, or the full id from `shipyard runs`.",
        )
    raise _not_found(text)


def _run_or_none(client: Any, run_id: str) -> Any:
    """The run with id ``run_id``, or None when there is none (other MLflow errors propagate)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        # Not a run id: sqlite says RESOURCE_DOES_NOT_EXIST, a server may say NOT_FOUND or
        # INVALID_PARAMETER_VALUE for a malformed id. An unreachable tracker is none of these.
        if getattr(exc, "error_code", "") in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"}:
            return None
        raise


def _runs_with_prefix(client: Any, prefix: str) -> list[Any]:
    """Runs (of any active experiment) whose id starts with ``prefix``; one more than is shown, at most.

    ``prefix`` is lower-case hex, so it needs no quoting in the filter.
    """
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    return list(
        client.search_runs(
            experiments,
            filter_string=f"attributes.run_id LIKE '{prefix}%'",
            max_results=_SHOWN_MATCHES + 1,
            order_by=["attributes.start_time DESC"],
        )
    )


def _not_found(text: str) -> TrackingError:
    return TrackingError(f"No tracked run matches {text!r}.", hint=_NOT_FOUND_HINT)


def _tracked(run: Any, experiment: str, ws: Workspace) -> TrackedRun:
    info, data = run.info, run.data
    tags = dict(data.tags)
    return TrackedRun(
        run_id=info.run_id,
        experiment=experiment,
        status=info.status,
        start_time=_datetime(info.start_time),
        params=dict(data.params),
        metrics=dict(data.metrics),
        tags=tags,
        artifact_uri=info.artifact_uri or "",
        run_name=info.run_name or "",
        lineage=Lineage.from_tags(tags, run_id=info.run_id),
        _workspace=ws,
    )


def _datetime(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc) if ms else None


def _artifact_files(client: Any, run_id: str, path: str | None = None) -> list[str]:
    files: list[str] = []
    for item in client.list_artifacts(run_id, path):
        files += _artifact_files(client, run_id, item.path) if item.is_dir else [item.path]
    return files


def _client(ws: Workspace) -> Any:
    from ._client import client_for

    return client_for(ws)


@contextlib.contextmanager
def _tracker_errors(ws: Workspace) -> Iterator[None]:
    """MLflow's errors, as the shipyard error that says what to do."""
    from mlflow.exceptions import MlflowException

    from ._client import tracking_error

    try:
        yield
    except MlflowException as exc:
        raise tracking_error(ws, exc) from exc


__all__ = ["TrackedRun", "get_run", "runs"]
