"""The one error tree of shipyard.

Every user-facing failure is a :class:`ShipyardError`. Messages say what
failed, why, and what to do next. Third-party errors are re-raised ``from``
the original so the cause stays visible.

``__all__`` at the bottom is the one list of error names: ``shipyard`` imports
and exports exactly these (``shipyard.ShipyardError``), so a new error is
public once it is listed there (and pinned in tests/unit/test_exported_members.py).

::

    ShipyardError
    ├── ConfigError                 bad or unknown settings, unusable workspace
    │   └── NoProject               no project found from the working directory
    ├── MissingDependency           an optional package or system tool is absent
    ├── TrackingError               MLflow tracking
    │   ├── NoActiveRun             logging outside a tracked run
    │   ├── InvalidMetric           a metric value that is not a finite-or-NaN number
    │   ├── InvalidRequirement      a model requirement that is not a valid pip requirement
    │   └── TrackingUnavailable     the tracking backend cannot be reached
    ├── FlowError                   a flow could not be started or inspected
    │   └── FlowFailed              a step raised; carries step, cause, log tail
    ├── RegistryError               model registry reads and alias moves
    │   └── ModelNotFound           a model, version or alias that does not exist
    ├── GateError                   a gate is declared or fed wrongly
    ├── GateFailed                  a blocking gate failed (carries the report)
    │   └── OverrideRefused         an override without a written reason
    ├── PackagingError              bento, service or image build
    │   ├── DockerUnavailable       no Docker daemon answers
    │   └── BaseImageMissing        the local base image has not been built
    ├── DeployError                 smoke tests, handoff bundles, registry push
    │   └── ContainerFailed         a test container exited before it was ready; carries exit code, log tail
    └── PromotionError              the promote() state machine
        └── ApprovalRefused         an approval the separation of duties forbids; carries rule, who
"""

from __future__ import annotations

from typing import Any


class ShipyardError(Exception):
    """Root of every error shipyard raises on purpose.

    Args:
        message: what failed and why.
        hint: what the user should do next; appended to the message.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}\n  → {hint}" if hint else message)


class ConfigError(ShipyardError):
    """A setting is unknown, has the wrong type, or the workspace is unusable."""


class MissingDependency(ShipyardError):
    """An optional Python package or a system tool is not installed."""


class TrackingError(ShipyardError):
    """Something went wrong talking to MLflow tracking."""


class NoActiveRun(TrackingError):
    """A logging call was made outside a tracked run."""


class InvalidMetric(TrackingError):
    """A metric value is not a number."""


class TrackingUnavailable(TrackingError):
    """The tracking backend cannot be reached."""


class FlowError(ShipyardError):
    """A flow could not be started or its results could not be read."""


class FlowFailed(FlowError):
    """A step of a flow raised.

    Attributes:
        step: name of the step that failed.
        cause: text of the original exception (type and message).
        log_tail: last lines of the failing task's output.
        pathspec: Metaflow pathspec of the run (``Flow/run_id``) when known.
        mlflow_run_id: the MLflow run that recorded it, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        step: str | None,
        cause: str,
        log_tail: str = "",
        pathspec: str | None = None,
        mlflow_run_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.step = step
        self.cause = cause
        self.log_tail = log_tail
        self.pathspec = pathspec
        self.mlflow_run_id = mlflow_run_id
        super().__init__(message, hint=hint)

    def _render_traceback_(self) -> list[str]:
        """What IPython shows: the step's error and log, not shipyard's own frames."""
        lines = [f"FlowFailed: {self}"]
        if self.log_tail:
            lines += ["", "last lines of the flow's output:", *self.log_tail.splitlines()]
        return lines


class RegistryError(ShipyardError):
    """A model-registry read or alias move failed."""


class ModelNotFound(RegistryError):
    """A model, version or alias does not exist."""


class GateError(ShipyardError):
    """A gate is declared wrongly or fed data it cannot evaluate."""


class GateFailed(ShipyardError):
    """At least one blocking gate failed and was not overridden.

    Attributes:
        report: the gate report that holds the verdicts.
    """

    def __init__(self, message: str, *, report: Any = None, hint: str | None = None) -> None:
        self.report = report
        super().__init__(message, hint=hint)


class OverrideRefused(GateFailed):
    """An override was asked for without a written reason."""


class PackagingError(ShipyardError):
    """A bento, service or image could not be built."""


class DockerUnavailable(PackagingError):
    """No Docker daemon answers."""


class BaseImageMissing(PackagingError):
    """The base image to build from does not exist locally."""


class DeployError(ShipyardError):
    """A smoke test, handoff bundle or registry push failed."""


class PromotionError(ShipyardError):
    """The promotion state machine could not go on."""


class ApprovalRefused(PromotionError):
    """An approval that the separation of duties forbids (it is recorded, and not counted).

    Attributes:
        rule: the rule that refused it: ``author`` (the run's author), ``promoter`` (who started the
            promotion) or ``identity`` (a reviewer name other than the approver's own identity).
        who: the identity that was refused.
    """

    def __init__(self, message: str, *, rule: str, who: str, hint: str | None = None) -> None:
        self.rule = rule
        self.who = who
        super().__init__(message, hint=hint)


class MonitoringError(ShipyardError):
    """Production data could not be read or held against the model's reference profile, or retraining failed."""


class InvalidRequirement(TrackingError):
    """A requirement passed to ``log_model`` is not a valid pip requirement string."""


class ContainerFailed(DeployError):
    """A test container exited, or the model server inside it died, before it was ready.

    Attributes:
        exit_code: the container's exit code; None while the container still runs (its server keeps
            restarting a worker that cannot start).
        log_tail: the last lines of ``docker logs``.
        seconds: from ``docker run`` to the moment the failure was seen.
    """

    def __init__(
        self,
        message: str,
        *,
        exit_code: int | None,
        log_tail: str,
        seconds: float,
        hint: str | None = None,
    ) -> None:
        self.exit_code = exit_code
        self.log_tail = log_tail
        self.seconds = seconds
        super().__init__(message, hint=hint)


class NoProject(ConfigError):
    """No shipyard project holds the working directory, and none was named.

    Attributes:
        start: the folder the search started from.
    """

    def __init__(self, message: str, *, start: str, hint: str | None = None) -> None:
        self.start = start
        super().__init__(message, hint=hint)


__all__ = [
    "ApprovalRefused",
    "BaseImageMissing",
    "ConfigError",
    "ContainerFailed",
    "DeployError",
    "DockerUnavailable",
    "FlowError",
    "FlowFailed",
    "GateError",
    "GateFailed",
    "InvalidMetric",
    "InvalidRequirement",
    "MissingDependency",
    "ModelNotFound",
    "MonitoringError",
    "NoActiveRun",
    "NoProject",
    "OverrideRefused",
    "PackagingError",
    "PromotionError",
    "RegistryError",
    "ShipyardError",
    "TrackingError",
    "TrackingUnavailable",
]
