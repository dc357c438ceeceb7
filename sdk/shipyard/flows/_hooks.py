"""What happens around every tracked step. The decorators only point here.

Q: Why does the ``start`` step create the MLflow run, not the runner?
A: A flow can be started in many ways (``shipyard.run``, ``python flow.py
   run``, Argo, Kubernetes). ``start`` runs exactly once per Metaflow run and
   before every other step, so every way of starting gets one MLflow run.
   Its id travels to later steps as the ``_shipyard_run_id`` artifact.
"""

from __future__ import annotations

import inspect
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

from .._core import lineage
from .._core.workspace import current_workspace
from ..tracking import _context, _runs
from ._metaflow import flow_parameters, run_in_any_namespace

RUN_ID_ARTIFACT = "_shipyard_run_id"

StepEndHook = Callable[["StepEnd"], None]
_step_end_hooks: list[StepEndHook] = []


@dataclass(frozen=True)
class StepEnd:
    """What a step-end hook sees: the step, its flow object, and the run it logged into."""

    step_name: str
    flow: Any
    step_function: Any
    run_id: str
    workspace: Any
    exception: BaseException | None


def register_step_end_hook(hook: StepEndHook) -> None:
    """Call ``hook`` at the end of every tracked step, after its metrics are durable.

    Higher layers (gates) plug in here, so this layer never imports them.
    A hook that raises fails the step with that error.
    """
    if hook not in _step_end_hooks:
        _step_end_hooks.append(hook)


@dataclass
class StepSession:
    step_name: str
    flow: Any
    active: _context.ActiveRun
    started: float


def step_started(step_name: str, flow: Any, inputs: Any, experiment: str | None) -> StepSession:
    from metaflow import current

    ws = current_workspace()
    pathspec = f"{current.flow_name}/{current.run_id}"
    run_id = _inherited_run_id(flow, inputs)
    if run_id is None and step_name == "start":
        run_id = _runs.create_flow_run(
            ws,
            flow_name=current.flow_name,
            pathspec=pathspec,
            source_file=Path(inspect.getfile(type(flow))).resolve(),
            experiment=experiment,
            params=_flow_parameters(flow),
        )
        _tag_metaflow_run(pathspec, run_id)
    elif run_id is None:
        run_id = _runs.find_flow_run(ws, pathspec) or _runs.create_flow_run(
            ws,
            flow_name=current.flow_name,
            pathspec=pathspec,
            source_file=Path(inspect.getfile(type(flow))).resolve(),
            experiment=experiment,
            params=_flow_parameters(flow),
        )
    setattr(flow, RUN_ID_ARTIFACT, run_id)
    active = _context.attach(ws, run_id)
    return StepSession(step_name, flow, active, time.monotonic())


def step_finished(session: StepSession, exception: BaseException | None) -> None:
    from metaflow import current

    active = session.active
    ws = active.workspace
    tags = {
        lineage.step_tag(session.step_name, "status"): "failed" if exception else "ok",
        lineage.step_tag(session.step_name, "task"): current.pathspec or "",
        lineage.step_tag(session.step_name, "seconds"): f"{time.monotonic() - session.started:.3f}",
    }
    if exception is not None:
        tags[lineage.ERROR_STEP] = session.step_name
        tags[lineage.ERROR_CAUSE] = f"{type(exception).__name__}: {exception}"[:5000]
    active.buffer.put_tags(tags)
    try:
        if not active.buffer.flush(ws.settings.flush_timeout).spooled_batches:
            step_function = getattr(type(session.flow), session.step_name, None)
            end = StepEnd(session.step_name, session.flow, step_function, active.run_id, ws, exception)
            for hook in _step_end_hooks:
                hook(end)
        result = active.close()
    finally:
        _context.detach(active)
    if result.spooled_batches:
        print(
            f"shipyard: the tracker at {ws.tracking_uri} is unreachable; {result.spooled_batches} batches are "
            f"safe in {active.buffer.spool.directory} and will be replayed (or run `shipyard sync`).",
            file=sys.stderr,
        )
        return
    if exception is not None:
        _runs.finish_run(ws, active.run_id, "FAILED")
    elif session.step_name == "end":
        _runs.finish_run(ws, active.run_id, "FINISHED")


def _inherited_run_id(flow: Any, inputs: Any) -> str | None:
    run_id = getattr(flow, RUN_ID_ARTIFACT, None)
    if run_id is None and inputs:
        for inp in inputs:  # a join step: every branch carries the same id
            run_id = getattr(inp, RUN_ID_ARTIFACT, None)
            if run_id:
                break
    return run_id


def _flow_parameters(flow: Any) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, _ in flow_parameters(flow):
        try:
            params[name] = str(getattr(flow, name))
        except Exception:  # a parameter whose value cannot be read is not worth failing a run for
            continue
    return params


def _tag_metaflow_run(pathspec: str, run_id: str) -> None:
    """Write the MLflow run id onto the Metaflow run, so the link goes both ways."""
    try:
        run_in_any_namespace(pathspec).add_tag(f"{lineage.MLFLOW_RUN_TAG}:{run_id}")
    except Exception as exc:  # the artifact still links the runs; say why the tag is missing
        print(f"shipyard: could not tag Metaflow run {pathspec}: {exc}", file=sys.stderr)
