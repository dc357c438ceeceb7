"""Prometheus alerting rules for one model version, as written into its handoff bundle.

Four alerts, each labelled ``model``, ``version`` and ``severity``:

=============================  ========  ====================================================================
alert                          severity  fires when (defaults in :class:`AlertThresholds`)
=============================  ========  ====================================================================
``ShipyardDriftDetected``      warning   an input column's ``shipyard_drift_detected`` gauge is 1 for 15m
                                         (one alert per column)
``ShipyardHighErrorRatio``     critical  5xx answers of ``/predict`` are more than 5 % of its answers over 5m,
                                         for 5m
``ShipyardHighLatencyP99``     warning   the 99th percentile of ``/predict`` latency is above 1 s over 5m,
                                         for 10m
``ShipyardMonitorDropped``     warning   the drift monitor dropped samples (queue full) in the last 15m
=============================  ========  ====================================================================

The ``shipyard_*`` metrics carry ``model`` and ``version`` labels; BentoML's
request metrics carry neither, only ``service_name`` (the model's slug, as
packaging names the service) and ``service_version`` (the bento version,
``v<model version>-<content hash>``), so those rules select on them.

:func:`prometheus_rule` is the Prometheus Operator's ``PrometheusRule``;
:func:`rule_groups` is the same groups as a plain Prometheus rule file
(``rule_files:``).

Q: Why is every gauge aggregated with ``max by (...)``?
A: Each worker process of the image keeps its own window and exports its own
   series (BentoML's multiprocess registry), and each replica is scraped on
   its own; one column drifting in any of them is one alert, not one per pod.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._core.errors import DeployError
from .._core.workspace import slug

if TYPE_CHECKING:
    from .handoff import HandoffSpec

_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")  # Prometheus' duration grammar
_ENDPOINT = "/predict"
_REQUESTS = "bentoml_service_request_duration_seconds"  # BentoML's request histogram


@dataclass(frozen=True)
class AlertThresholds:
    """Thresholds and ``for:`` durations of a bundle's alerts (Prometheus durations: ``30s``, ``15m``, ``1h``).

    Attributes:
        drift_for: how long a column must stay drifted before its alert fires. The image recomputes drift every
            ``monitor_interval_seconds`` over a sliding window, so a short burst of odd requests does not page.
        error_ratio: share of ``/predict`` answers that are 5xx above which the error alert fires.
        error_for: how long the ratio must stay above ``error_ratio``.
        latency_p99_seconds: 99th percentile latency of ``/predict`` (seconds) above which the latency alert fires.
        latency_for: how long p99 must stay above ``latency_p99_seconds``.
        rate_window: the range the error ratio and latency percentile are computed over.
        dropped_window: the range in which any sample dropped by the drift monitor fires its alert.
        dropped_for: how long samples must keep being seen as dropped in ``dropped_window``.

    Example:
        >>> AlertThresholds(latency_p99_seconds=0.25).latency_for
        '10m'
    """

    drift_for: str = "15m"
    error_ratio: float = 0.05
    error_for: str = "5m"
    latency_p99_seconds: float = 1.0
    latency_for: str = "10m"
    rate_window: str = "5m"
    dropped_window: str = "15m"
    dropped_for: str = "0s"

    def __post_init__(self) -> None:
        for name in ("drift_for", "error_for", "latency_for", "rate_window", "dropped_window", "dropped_for"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _DURATION.match(value):
                raise DeployError(
                    f"Alert setting {name}={value!r} is not a Prometheus duration.",
                    hint="Write it like 30s, 15m, 1h or 1h30m.",
                )
        if not 0 < self.error_ratio < 1:
            raise DeployError(f"Alert setting error_ratio={self.error_ratio!r} must be between 0 and 1 (a share).")
        if not self.latency_p99_seconds > 0:
            raise DeployError(f"Alert setting latency_p99_seconds={self.latency_p99_seconds!r} must be positive.")
        for name in ("rate_window", "dropped_window"):
            if getattr(self, name) in ("0s", "0m", "0h", "0ms"):
                raise DeployError(f"Alert setting {name} must be longer than zero.")


def _quoted(value: str) -> str:
    """A PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def shipyard_selector(spec: HandoffSpec) -> str:
    return f"model={_quoted(spec.model_name)},version={_quoted(str(spec.version))}"


def bentoml_selector(spec: HandoffSpec) -> str:
    # service_version is the bento version, "v<model version>-<content hash>" (packaging.bento).
    return (
        f"service_name={_quoted(slug(spec.model_name))},"
        f"service_version=~{_quoted('v' + re.escape(str(spec.version)) + '-.*')},"
        f"endpoint={_quoted(_ENDPOINT)}"
    )


def error_ratio_query(spec: HandoffSpec, window: str) -> str:
    """Share of ``/predict`` answers of ``spec``'s version that were 5xx over ``window``: one series.

    4xx answers (the client's fault) count as answers, not as errors. With no
    request in the window the answer is empty (or NaN), never a passing 0.
    """
    bentoml = bentoml_selector(spec)
    # BentoML creates a response code's series at its first such answer: no 5xx yet is a ratio of 0.
    return (
        f'(sum(rate({_REQUESTS}_count{{{bentoml},http_response_code=~"5.."}}[{window}])) or vector(0))'
        f" / sum(rate({_REQUESTS}_count{{{bentoml}}}[{window}]))"
    )


def latency_p99_query(spec: HandoffSpec, window: str) -> str:
    """The 99th percentile of ``/predict`` latency (seconds) of ``spec``'s version over ``window``: one series."""
    return f"histogram_quantile(0.99, sum by (le) (rate({_REQUESTS}_bucket{{{bentoml_selector(spec)}}}[{window}])))"


def measurements(spec: HandoffSpec) -> dict[str, str]:
    """The PromQL each alert compares with its threshold, by alert name (what a dashboard would plot).

    Example:
        >>> measurements(spec)["ShipyardHighErrorRatio"]    # doctest: +SKIP
        'sum(rate(bentoml_service_request_duration_seconds_count{...,http_response_code=~"5.."}[5m])) / ...'
    """
    t = spec.alerts
    shipyard = shipyard_selector(spec)
    return {
        "ShipyardDriftDetected": f"max by (model, version, column) (shipyard_drift_detected{{{shipyard}}})",
        "ShipyardHighErrorRatio": error_ratio_query(spec, t.rate_window),
        "ShipyardHighLatencyP99": latency_p99_query(spec, t.rate_window),
        "ShipyardMonitorDropped": (
            f"sum by (model, version) (increase(shipyard_monitor_dropped_total{{{shipyard}}}[{t.dropped_window}]))"
        ),
    }


def rule_groups(spec: HandoffSpec) -> dict[str, Any]:
    """A Prometheus rule file (``{"groups": [...]}``) with the alerts of ``spec``'s model version.

    Example:
        >>> import yaml
        >>> (bundle_dir / "alerts" / "rules.yaml").write_text(yaml.safe_dump(rule_groups(spec)))  # doctest: +SKIP
    """
    t = spec.alerts
    measured = measurements(spec)
    who = f"{spec.model_name} v{spec.version}"
    labels = {"model": spec.model_name, "version": str(spec.version)}
    rules = [
        {
            "alert": "ShipyardDriftDetected",
            "expr": f"{measured['ShipyardDriftDetected']} == 1",
            "for": t.drift_for,
            "labels": {**labels, "severity": "warning"},
            "annotations": {
                "summary": f"Input column {{{{ $labels.column }}}} of {who} drifted from its reference profile.",
                "description": "The column's drift distance (shipyard_drift_distance) has been at or above the "
                f"threshold for {t.drift_for}. Compare with `shipyard monitor {shlex.quote(f'{spec.model_name}/{spec.version}')}` "
                "and retrain on recent data if the change is real.",
            },
        },
        {
            "alert": "ShipyardHighErrorRatio",
            "expr": f"{measured['ShipyardHighErrorRatio']} > {t.error_ratio:g}",
            "for": t.error_for,
            "labels": {**labels, "severity": "critical"},
            "annotations": {
                "summary": f"{{{{ $value | humanizePercentage }}}} of {who}'s {_ENDPOINT} answers are 5xx.",
                "description": f"More than {t.error_ratio:.0%} of {_ENDPOINT} requests failed with a server "
                f"error over {t.rate_window}, for {t.error_for}. Read the pods' logs; roll back with "
                f"`shipyard rollback {shlex.quote(spec.model_name)}`.",
            },
        },
        {
            "alert": "ShipyardHighLatencyP99",
            "expr": f"{measured['ShipyardHighLatencyP99']} > {t.latency_p99_seconds:g}",
            "for": t.latency_for,
            "labels": {**labels, "severity": "warning"},
            "annotations": {
                "summary": f"{who}'s {_ENDPOINT} p99 latency is {{{{ $value | humanizeDuration }}}}.",
                "description": f"The 99th percentile of {_ENDPOINT} latency over {t.rate_window} has been above "
                f"{t.latency_p99_seconds:g} s for {t.latency_for}. Check CPU limits and replicas.",
            },
        },
        {
            "alert": "ShipyardMonitorDropped",
            "expr": f"{measured['ShipyardMonitorDropped']} > 0",
            "for": t.dropped_for,
            "labels": {**labels, "severity": "warning"},
            "annotations": {
                "summary": f"The drift monitor of {who} dropped {{{{ $value }}}} samples.",
                "description": f"Requests came faster than drift was computed in the last {t.dropped_window}, "
                "so drift gauges cover fewer rows than were served (requests were answered). Raise "
                "monitor_queue_rows or the pods' CPU.",
            },
        },
    ]
    return {"groups": [{"name": f"shipyard-{slug(spec.model_name)}-v{slug(str(spec.version))}", "rules": rules}]}


def prometheus_rule(spec: HandoffSpec) -> dict[str, Any]:
    """The Prometheus Operator's ``PrometheusRule`` object holding :func:`rule_groups` (``k8s/prometheus-rule.yaml``).

    The operator picks it up when its ``ruleSelector`` matches the labels here
    (``app.kubernetes.io/managed-by: shipyard`` among them).

    Example:
        >>> prometheus_rule(spec)["kind"]    # doctest: +SKIP
        'PrometheusRule'
    """
    app = slug(spec.model_name)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": f"{app}-v{slug(str(spec.version))}",
            "namespace": spec.namespace,
            "labels": {
                "app.kubernetes.io/name": app,
                "app.kubernetes.io/version": slug(f"v{spec.version}"),
                "app.kubernetes.io/managed-by": "shipyard",
            },
        },
        "spec": rule_groups(spec),
    }
