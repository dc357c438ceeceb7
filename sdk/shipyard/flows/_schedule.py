"""Scheduling a tracked flow on a cluster: Argo Workflows, through Metaflow's Deployer API.

:func:`schedule` compiles a ``@shipyard.track`` flow for Argo Workflows with a
cron schedule and deploys it (or, with ``only_json=True``, returns the
compiled ``WorkflowTemplate`` and deploys nothing). Every step container gets
shipyard's tracking environment (``SHIPYARD_TRACKING_URI``, the experiment and
every other setting given explicitly), so a step on the cluster records into
the team's tracking server exactly as a local run does. A step's own
``@kubernetes`` and ``@resources`` are Metaflow's to compile, as they are.

The schedule and the environment are added the Metaflow way: a
:class:`ScheduledDeployment` flow mutator adds ``@schedule`` to the flow and
``@environment`` to each step (merged with a step's own ``@environment``,
whose variables win). The mutator is applied in a deploy copy of the flow
file, written beside it, handed to Metaflow and removed again; the copy is
the original with two lines added before its ``if __name__ == "__main__":``,
so every line number of the flow stays the same.

Q: Why a copy, and not ``--with`` on Metaflow's command line?
A: ``--with`` adds step decorators only, ``@schedule`` is a flow decorator,
   and a ``--with environment`` is silently dropped on a step that has an
   ``@environment`` of its own. Editing the user's file is not ours to do,
   and the compiled template is not ours to edit either.

Q: Why beside the original?
A: Metaflow packages the flow file's folder for the cluster, and steps there
   run ``python <copy> step ...``: the copy must sit where the flow's own
   imports (helper modules next to it) resolve, and the original must be in
   the package, since the run's source lineage is read from it.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metaflow import FlowMutator

from .._core.errors import ConfigError, FlowError, MissingDependency
from .._core.hashing import sha256_text
from .._core.workspace import Workspace, current_workspace
from ._cell import is_main_guard

SCHEDULERS = ("argo-workflows",)
_COPY_MARK = "# deploy copy written by shipyard.schedule"
_COPY_PREFIX = "_shipyard_scheduled_"
_CRON_MACROS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
# (name, lowest, highest, names allowed in place of numbers)
_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRON_ITEM = re.compile(r"^(?P<range>\*|\?|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>[0-9]+))?$")
# Variables that are paths on this machine: meaningless in a pod.
_LOCAL_ONLY = frozenset({"SHIPYARD_WORKSPACE", "SHIPYARD_GITOPS_REPO"})


@dataclass(frozen=True)
class ScheduledFlow:
    """A flow compiled for a scheduler, and deployed unless it was a dry run.

    Attributes:
        flow: the Metaflow flow name.
        workflow: the name of the Argo ``WorkflowTemplate`` (and ``CronWorkflow``).
        on: the scheduler (``argo-workflows``).
        cron: the schedule, five cron fields or a macro such as ``@daily``.
        timezone: IANA time zone of the schedule; None for the cluster's (UTC).
        env: the variables every step container gets, for tracking.
        deployed: False for a dry run (``only_json=True``).
        template: the compiled ``WorkflowTemplate`` of a dry run; None after a deploy.
    """

    flow: str
    workflow: str
    on: str
    cron: str
    timezone: str | None
    env: dict[str, str]
    deployed: bool
    template: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def json(self) -> str | None:
        """The compiled ``WorkflowTemplate`` as JSON text (dry runs only)."""
        return json.dumps(self.template, indent=2) if self.template is not None else None

    @property
    def step_templates(self) -> dict[str, dict[str, Any]]:
        """The container template of each flow step, by step name (dry runs only); Metaflow's hooks left out."""
        if self.template is None:
            return {}
        found: dict[str, dict[str, Any]] = {}
        for template in self.template["spec"]["templates"]:
            step = ((template.get("metadata") or {}).get("annotations") or {}).get("metaflow/step_name")
            if step and "container" in template:
                found[step] = template
        return found

    def __repr__(self) -> str:
        state = "deployed" if self.deployed else "compiled (dry run)"
        zone = f" {self.timezone}" if self.timezone else ""
        return f"<ScheduledFlow {self.flow} as {self.workflow} on {self.on} at {self.cron!r}{zone}: {state}>"


class ScheduledDeployment(FlowMutator):
    """Adds ``@schedule(cron, timezone)`` to a flow and ``@environment(vars=env)`` to each of its steps.

    Applied by the deploy copy :func:`schedule` writes; a step's own
    ``@environment`` variables win over ``env`` for the names both set.
    """

    def init(self, *args: Any, **kwargs: Any) -> None:
        self.cron: str = kwargs["cron"]
        self.timezone: str | None = kwargs.get("timezone")
        self.env: dict[str, str] = dict(kwargs.get("env") or {})

    def pre_mutate(self, mutable_flow: Any) -> None:
        from metaflow.user_decorators.mutable_flow import MutableFlow

        # Metaflow lets flow decorators be added here only, before any step is mutated.
        mutable_flow.add_decorator(
            "schedule", deco_kwargs={"cron": self.cron, "timezone": self.timezone}, duplicates=MutableFlow.OVERRIDE
        )

    def mutate(self, mutable_flow: Any) -> None:
        from metaflow.user_decorators.mutable_step import MutableStep

        for _, mutable_step in mutable_flow.steps:
            own: dict[str, Any] = {}
            for name, _, _, kwargs in mutable_step.decorator_specs:
                if name == "environment":
                    own.update(kwargs.get("vars") or {})
            mutable_step.add_decorator(
                "environment", deco_kwargs={"vars": {**self.env, **own}}, duplicates=MutableStep.OVERRIDE
            )


def schedule(
    flow: Any,
    *,
    cron: str,
    on: str = "argo-workflows",
    timezone: str | None = None,
    name: str | None = None,
    image: str | None = None,
    experiment: str | None = None,
    tags: Sequence[str] = (),
    only_json: bool = False,
    show_output: bool = False,
) -> ScheduledFlow:
    """Deploy a tracked flow to run on a cron schedule on the cluster (Argo Workflows).

    Args:
        flow: a ``@shipyard.track`` FlowSpec class (from a module or a notebook cell) or a flow file.
        cron: when to run: five cron fields (``"0 3 * * *"``) or ``@daily``, ``@hourly``, ...
        on: the scheduler; only ``"argo-workflows"``.
        timezone: IANA time zone the cron is read in (``"Europe/Berlin"``); default the cluster's (UTC).
        name: the Argo workflow name; default: derived from the flow name by Metaflow.
        image: the container image of the steps (with shipyard and the flow's packages installed);
            default ``METAFLOW_KUBERNETES_CONTAINER_IMAGE``.
        experiment: the MLflow experiment the scheduled runs record into (``SHIPYARD_EXPERIMENT``).
        tags: Metaflow tags for every scheduled run.
        only_json: compile and return the ``WorkflowTemplate`` without deploying anything.
        show_output: stream Metaflow's output.

    Raises:
        FlowError: the flow is not tracked, the cron, time zone or scheduler is wrong, or Metaflow failed.
        ConfigError: tracking is the embedded store, or Metaflow has no S3 datastore or no image.
        MissingDependency: the ``kubernetes`` package is missing (``pip install 'shipyard[team]'``).

    Example:
        >>> shipyard.schedule(RetrainFlow, cron="0 3 * * *")                 # doctest: +SKIP
        >>> dry = shipyard.schedule(RetrainFlow, cron="@daily", only_json=True)  # doctest: +SKIP
        >>> sorted(dry.step_templates)                                         # doctest: +SKIP
        ['end', 'start']
    """
    if on not in SCHEDULERS:
        raise FlowError(
            f"shipyard.schedule() cannot deploy on {on!r}.",
            hint=f"Use on={SCHEDULERS[0]!r} (Argo Workflows on Kubernetes), the one scheduler supported.",
        )
    cron = check_cron(cron)
    timezone = _check_timezone(timezone)
    _require_kubernetes()
    from ._runner import _flow_file

    ws = current_workspace()
    flow_file = _flow_file(flow, ws)  # refuses a flow without @shipyard.track
    _require_team_tracking(ws)
    metaflow_env = _metaflow_deploy_env(image)
    env = step_env(ws, flow_file.path, flow_file.env, experiment)
    copy = _write_deploy_copy(flow_file.path, cron, timezone, env)
    try:
        deployed = _deploy(copy, ws, metaflow_env, name, list(tags), only_json, show_output)
    finally:
        copy.unlink(missing_ok=True)
    return ScheduledFlow(
        flow=deployed.flow_name,
        workflow=deployed.name,
        on=on,
        cron=cron,
        timezone=timezone,
        env=env,
        deployed=not only_json,
        template=deployed.workflow_template if only_json else None,
    )


def check_cron(cron: str) -> str:
    """``cron`` with its spaces normalized, or a :class:`FlowError` saying which field is wrong.

    Example:
        >>> check_cron(" 0  3 * * 1-5 ")
        '0 3 * * 1-5'
    """
    text = " ".join(str(cron).split()).lower()
    if text in _CRON_MACROS:
        return text
    fields = text.split(" ") if text else []
    hint = 'Give five fields, minute hour day-of-month month day-of-week, e.g. "0 3 * * *" (03:00 daily), or @daily.'
    if len(fields) != 5:
        raise FlowError(f"{cron!r} is not a cron schedule: it has {len(fields)} fields, not 5.", hint=hint)
    for text_field, (label, low, high, names) in zip(fields, _CRON_FIELDS):
        for item in text_field.split(","):
            match = _CRON_ITEM.match(item)
            bounds = match.group("range").split("-") if match else []
            ok = bool(match) and all(_cron_value(b, low, high, names) is not None for b in bounds if b not in "*?")
            if ok and len(bounds) == 2:
                first, last = (_cron_value(b, low, high, names) for b in bounds)
                ok = first is not None and last is not None and first <= last
            if ok and match and match.group("step") is not None:
                ok = int(match.group("step")) > 0
            if not ok:
                raise FlowError(
                    f"{cron!r} is not a cron schedule: {item!r} is no {label} (allowed: {low}-{high}, *, lists, "
                    "ranges and /steps).",
                    hint=hint,
                )
    return " ".join(fields)


def _cron_value(text: str, low: int, high: int, names: Sequence[str]) -> int | None:
    if text.isdigit():
        value = int(text)
        return value if low <= value <= high else None
    return names.index(text) + low if text in names else None


def _check_timezone(timezone: str | None) -> str | None:
    if timezone is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise FlowError(
            f"{timezone!r} is not a time zone.", hint='Give an IANA name such as "UTC" or "Europe/Berlin".'
        ) from exc
    return timezone


def _require_kubernetes() -> None:
    if importlib.util.find_spec("kubernetes") is None:
        raise MissingDependency(
            "Deploying to Argo Workflows needs the kubernetes package, which is not installed.",
            hint="pip install 'shipyard[team]'",
        )


def _require_team_tracking(ws: Workspace) -> None:
    if ws.embedded or not ws.tracking_uri.startswith(("http://", "https://")):
        raise ConfigError(
            f"Tracking uses {ws.tracking_uri}, which steps on the cluster cannot reach, so their runs would "
            "record nothing.",
            hint="Set SHIPYARD_TRACKING_URI (or tracking_uri in shipyard.toml) to the team's MLflow server, "
            "e.g. http://mlflow.mlops.svc:5000, reachable from the cluster.",
        )


def _metaflow_setting(name: str) -> str | None:
    """A Metaflow setting as the deploy process will read it: the environment, else Metaflow's config file."""
    if value := os.environ.get(name):
        return value
    from metaflow.metaflow_config_funcs import init_config

    try:
        value = init_config().get(name)
    except Exception as exc:  # a METAFLOW_PROFILE without its config file
        raise ConfigError(f"Metaflow's configuration cannot be read: {exc}",
                          hint="Fix METAFLOW_PROFILE / METAFLOW_HOME, or run `metaflow configure`.") from exc
    return str(value) if value else None


def _metaflow_deploy_env(image: str | None) -> dict[str, str]:
    """What the deploy process needs beyond the environment; a :class:`ConfigError` for what is missing."""
    datastore = _metaflow_setting("METAFLOW_DEFAULT_DATASTORE")
    if datastore != "s3":
        raise ConfigError(
            f"Argo Workflows needs Metaflow's datastore in S3, and it is {datastore or 'local'}: a pod cannot "
            "read this machine's files.",
            hint="Set METAFLOW_DEFAULT_DATASTORE=s3 and METAFLOW_DATASTORE_SYSROOT_S3=s3://<bucket>/metaflow "
            "(with METAFLOW_S3_ENDPOINT_URL for an S3-compatible store and AWS credentials), in the environment "
            "or in Metaflow's config (metaflow configure).",
        )
    if not _metaflow_setting("METAFLOW_DATASTORE_SYSROOT_S3"):
        raise ConfigError(
            "Metaflow's datastore is S3 but METAFLOW_DATASTORE_SYSROOT_S3 is not set: Metaflow does not know "
            "where to put code packages and artifacts.",
            hint="Set METAFLOW_DATASTORE_SYSROOT_S3=s3://<bucket>/metaflow.",
        )
    env: dict[str, str] = {}
    if image:
        env["METAFLOW_KUBERNETES_CONTAINER_IMAGE"] = image
    elif not _metaflow_setting("METAFLOW_KUBERNETES_CONTAINER_IMAGE"):
        raise ConfigError(
            "No container image for the steps: Metaflow's default image has neither shipyard nor the flow's "
            "packages.",
            hint="Pass image= (--image) or set METAFLOW_KUBERNETES_CONTAINER_IMAGE to an image with shipyard "
            "installed (e.g. the one `shipyard build-base-image` builds, pushed to your registry).",
        )
    return env


def step_env(
    ws: Workspace, flow_path: Path, source_env: Mapping[str, str], experiment: str | None = None
) -> dict[str, str]:
    """The variables every step container gets: shipyard's explicit settings and the tracking URIs.

    Local paths are left out; the project is the step's working directory
    (the unpacked code package), and the source lineage is read from the
    original flow file in that package, as a local run reads it.
    """
    env = {k: v for k, v in ws.settings.explicit_env().items() if k not in _LOCAL_ONLY}
    if experiment:
        env["SHIPYARD_EXPERIMENT"] = experiment
    env["SHIPYARD_PROJECT_DIR"] = "."
    # MLflow's fluent API (mlflow.<flavor>.log_model in a step) reads these, not shipyard's settings.
    env["MLFLOW_TRACKING_URI"] = ws.tracking_uri
    env["MLFLOW_REGISTRY_URI"] = ws.registry_uri
    env["SHIPYARD_SOURCE_KIND"] = source_env.get("SHIPYARD_SOURCE_KIND", "file")
    cell = source_env.get("SHIPYARD_CELL_SOURCE")
    env["SHIPYARD_CELL_SOURCE"] = Path(cell).name if cell else flow_path.name
    if notebook := source_env.get("SHIPYARD_NOTEBOOK"):
        env["SHIPYARD_NOTEBOOK"] = notebook
    return dict(sorted(env.items()))


def deploy_source(source: str, flow_name: str, cron: str, timezone: str | None, env: Mapping[str, str]) -> str:
    """The flow file's text with :class:`ScheduledDeployment` applied to ``flow_name`` before its main guard."""
    try:
        body = ast.parse(source).body
    except SyntaxError as exc:
        raise FlowError(f"The flow file is not valid Python: {exc.msg} (line {exc.lineno}).",
                        hint="Fix the file, then schedule it again.") from exc
    if not any(isinstance(s, ast.ClassDef) and s.name == flow_name for s in body):
        raise FlowError(f"The flow file has no top-level class {flow_name}.",
                        hint="Define the flow class at the top level of its file.")
    lines = source.splitlines()
    guard = next((s for s in body if is_main_guard(s)), None)
    at = guard.lineno - 1 if guard else len(lines)
    applied = f"_ShipyardScheduledDeployment(cron={cron!r}, timezone={timezone!r}, env={dict(env)!r})"
    added = [
        f"from shipyard.flows._schedule import ScheduledDeployment as _ShipyardScheduledDeployment  {_COPY_MARK}",
        f"{flow_name} = {applied}({flow_name})",
    ]
    if guard is None:
        added += ["", 'if __name__ == "__main__":', f"    {flow_name}()"]
    return "\n".join([*lines[:at], *added, *lines[at:]]) + "\n"


def _write_deploy_copy(path: Path, cron: str, timezone: str | None, env: Mapping[str, str]) -> Path:
    source = path.read_text(encoding="utf-8")
    text = deploy_source(source, _flow_class_name(source, path), cron, timezone, env)
    # Named by its content: Metaflow's Deployer caches a flow file's module by path within a process.
    copy = path.with_name(f"{_COPY_PREFIX}{path.stem}_{sha256_text(text)[:10]}.py")
    if copy.exists() and _COPY_MARK not in copy.read_text(encoding="utf-8", errors="replace"):
        raise FlowError(
            f"{copy} exists and was not written by shipyard; the deploy copy of {path.name} would replace it.",
            hint=f"Rename {copy.name}.",
        )
    copy.write_text(text, encoding="utf-8")
    return copy


def _flow_class_name(source: str, path: Path) -> str:
    from ._cell import tracked_in_source

    names = tracked_in_source(source).flows
    if len(names) != 1:
        raise FlowError(
            f"{path.name} defines {len(names)} flow classes ({', '.join(names) or 'none'}); Metaflow deploys "
            "a file with exactly one.",
            hint="Keep one FlowSpec class per flow file.",
        )
    return names[0]


def _deploy(copy: Path, ws: Workspace, metaflow_env: Mapping[str, str], name: str | None, tags: list[str],
            only_json: bool, show_output: bool) -> Any:
    from metaflow import Deployer

    env = {**ws.child_env(), **metaflow_env}
    env.pop("METAFLOW_DATASTORE_SYSROOT_LOCAL", None)  # the S3 datastore is the one that counts here
    create_kwargs: dict[str, Any] = {"only_json": only_json}
    if tags:
        create_kwargs["tags"] = tags
    try:
        deployer = Deployer(str(copy), show_output=show_output, env=env, cwd=str(ws.project_dir))
        target = deployer.argo_workflows(name=name) if name else deployer.argo_workflows()
        return target.create(**create_kwargs)
    except Exception as exc:
        detail = _tail(str(exc))
        raise FlowError(
            f"Metaflow could not {'compile' if only_json else 'deploy'} the flow for Argo Workflows:\n{detail}",
            hint="Read Metaflow's message above; for a deploy, check that kubectl reaches the cluster "
            "(METAFLOW_KUBERNETES_NAMESPACE) and that Argo Workflows is installed there.",
        ) from exc


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


__all__ = ["SCHEDULERS", "ScheduledDeployment", "ScheduledFlow", "check_cron", "schedule", "step_env"]
