"""The active tracked run.

Active-run state lives in a ``contextvar`` so concurrent notebook tasks do not
see each other's runs. Threads started inside a step get a fresh context, so
the run attached by a step is also kept as the process default: training code
that logs from a worker thread still reaches its run.
"""

from __future__ import annotations

import contextvars
import re
import threading
from dataclasses import dataclass, field

from .._core.errors import InvalidMetric, NoActiveRun
from .._core.workspace import Workspace
from ._buffer import FlushResult, MetricBuffer


@dataclass(eq=False)
class ActiveRun:
    """A run this process logs into, with its buffer."""

    run_id: str
    workspace: Workspace
    buffer: MetricBuffer
    _next_step: dict[str, int] = field(default_factory=dict)

    def close(self) -> FlushResult:
        return self.buffer.close(self.workspace.settings.flush_timeout)


_active: contextvars.ContextVar[ActiveRun | None] = contextvars.ContextVar("shipyard_active_run", default=None)
_process_default: ActiveRun | None = None
_guard = threading.Lock()


def current() -> ActiveRun:
    run = _active.get() or _process_default
    if run is None:
        raise NoActiveRun(
            "There is no active shipyard run to log to.",
            hint="Log inside a step of a flow decorated with @shipyard.track, or inside "
            "`with shipyard.start_run():` in a script.",
        )
    return run


def current_or_none() -> ActiveRun | None:
    return _active.get() or _process_default


def attach(ws: Workspace, run_id: str) -> ActiveRun:
    """Make ``run_id`` the active run of this context and the process default."""
    global _process_default
    from ._client import client_for
    from ._live import LiveLog

    # MLflow is imported here, in the caller's thread, before the writer thread starts. Imported by the
    # writer while the step's own code imports it too (``import mlflow``, ``log_dataset``), MLflow's
    # circular imports meet half-initialised modules in the other thread and fail ("cannot import name
    # 'EvaluationDataset' from 'mlflow.entities'").
    client = client_for(ws)
    buffer = MetricBuffer(
        lambda: client,
        run_id,
        ws.spool_dir,
        flush_interval=ws.settings.flush_interval,
        batch_size=ws.settings.batch_size,
        live=LiveLog(ws.live_dir / run_id),
    )
    run = ActiveRun(run_id, ws, buffer)
    _active.set(run)
    with _guard:
        _process_default = run
    return run


def detach(run: ActiveRun) -> None:
    global _process_default
    if _active.get() is run:
        _active.set(None)
    with _guard:
        if _process_default is run:
            _process_default = None


# MLflow's own rule for metric and param names
_VALID_NAME = re.compile(r"^[/\w.\- :]{1,250}$")
_checked_names: set[str] = set()


def check_name(name: object, what: str = "metric") -> str:
    if name in _checked_names:
        return name  # type: ignore[return-value]
    if not isinstance(name, str) or not _VALID_NAME.match(name) or ".." in name or name.startswith("/"):
        raise InvalidMetric(
            f"{what} name {name!r} is not valid.",
            hint="Use up to 250 letters, digits, and _ - . / : or spaces, e.g. 'val/accuracy'.",
        )
    _checked_names.add(name)
    return name


def as_number(name: str, value: object) -> float:
    if isinstance(value, (str, bytes, bool)) or value is None:
        raise InvalidMetric(
            f"Metric {name!r} got {type(value).__name__} {value!r}; metrics must be numbers.",
            hint="Pass an int or float (use log_params for text values).",
        )
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidMetric(
            f"Metric {name!r} got {type(value).__name__}, which is not a number.",
            hint="Pass an int or float, e.g. float(loss.item()).",
        ) from exc
