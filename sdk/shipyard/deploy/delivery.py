"""Progressive delivery of a model version: canary analysis on the image's own metrics, and GitOps objects.

A bundle's ``base/`` holds a plain ``Deployment``; :class:`DeliverySpec` picks how a new version replaces the
running one:

==================  ===================================================================================
mode                what :func:`delivery_objects` adds to ``base/``
==================  ===================================================================================
``rolling``         nothing: Kubernetes' rolling update, gated only by the readiness probe
``argo-canary``     an Argo Rollouts ``Rollout`` (``workloadRef`` to the Deployment) shifting traffic by
                    ``steps``, pausing, then running the analysis at each step; ``<app>-canary`` and
                    ``<app>-stable`` Services; the ``AnalysisTemplate`` ``<app>-analysis``
``argo-bluegreen``  a ``Rollout`` with a blue/green strategy (the base Service ``<app>`` is the active one,
                    ``<app>-preview`` the new pods'), the analysis before and after the switch
``flagger``         a Flagger ``Canary`` targeting the Deployment, one ``MetricTemplate`` per check
==================  ===================================================================================

The analysis (:func:`checks`) reads what the image itself exports, filtered by the model version's labels so
that only the new version's pods are measured (the selectors of :mod:`.alerts`):

``errors``   share of ``/predict`` answers that are 5xx over ``window`` (4xx are the caller's fault), at most
             ``max_error_ratio``
``latency``  p99 of ``/predict`` over ``window`` (BentoML's request histogram), at most the model's latency
             gate (:func:`latency_budget`); only when the model has such a gate
``drift``    ``max(shipyard_dataset_drift)``, the image's own verdict (1 when at least half of the input
             columns drift from the reference profile), must be 0; only when the image has a reference profile

Q: Why do the queries not default to 0 when there is no data?
A: Argo Rollouts reads ``result[0]``; an empty answer is a measurement *error*, and more than
   ``consecutiveErrorLimit`` (4) errors in a row abort the rollout. A version nobody called must not pass
   its analysis, so only the 5xx numerator falls back to 0 (BentoML creates a response code's series at its
   first such answer); without any traffic the ratio has no denominator and the measurement errors.
   A window with series but no requests gives NaN, which fails every condition.

:func:`gitops_objects` writes an Argo CD ``Application`` and a Flux ``Kustomization`` per overlay;
:func:`validate_custom` checks every custom resource generated here against the upstream CRD's schema
(``schemas/``, made strict: an unknown field fails).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from .._core import lineage as names
from .._core.errors import DeployError
from .alerts import error_ratio_query, latency_p99_query, shipyard_selector

if TYPE_CHECKING:
    from .handoff import HandoffSpec

MODES = ("rolling", "argo-canary", "argo-bluegreen", "flagger")
CHECKS = ("errors", "latency", "drift")
OPS = ("<=", "<")

# What Prometheus ranges, Go's time.ParseDuration (Argo Rollouts, Flagger) and Argo's pause all accept.
_DURATION = re.compile(r"^(\d+(ms|s|m|h))+$")
_ROLLOUTS = "argoproj.io/v1alpha1"
_FLAGGER = "flagger.app/v1beta1"
_FLUX_NAMESPACE = "flux-system"  # where `flux bootstrap` puts its GitRepository objects
_SCHEMAS = "schemas"


def _fail(message: str, hint: str) -> DeployError:
    return DeployError(message, hint=hint)


def _duration(name: str, value: Any) -> None:
    if not isinstance(value, str) or not _DURATION.match(value) or not re.search(r"[1-9]", value):
        raise _fail(
            f"Delivery setting {name}={value!r} is not a positive duration.",
            "Write it like 30s, 2m, 1h or 1m30s (units ms, s, m, h; no decimals).",
        )


@dataclass(frozen=True)
class DeliverySpec:
    """How a new model version replaces the running one, and the analysis that decides.

    Attributes:
        mode: one of :data:`MODES`.
        steps: canary weights in percent, increasing, each 1..99; after the last one the new version takes all
            traffic. Blue/green ignores them.
        pause: how long each weight is held before its analysis (Argo Rollouts).
        interval: time between two measurements of the analysis (Flagger: time per step).
        count: measurements per analysis run (Argo Rollouts).
        failure_limit: failed measurements tolerated; one more fails the analysis and rolls back.
        window: the range the error ratio and latency percentile are computed over.
        max_error_ratio: share of 5xx answers of ``/predict`` above which the new version fails.
        checks: the analysis, a subset of :data:`CHECKS`; None picks every check the model supports
            (see :func:`checks`).
        prometheus: the address the analysis queries, as seen from the rollout controller.

    Raises:
        DeployError: a setting is out of range.

    Example:
        >>> DeliverySpec(mode="argo-canary", steps=(20, 50)).to_dict()["steps"]
        [20, 50]
    """

    mode: str = "rolling"
    steps: tuple[int, ...] = (10, 25, 50)
    pause: str = "2m"
    interval: str = "1m"
    count: int = 3
    failure_limit: int = 1
    window: str = "2m"
    max_error_ratio: float = 0.01
    checks: tuple[str, ...] | None = None
    prometheus: str = "http://prometheus-operated.monitoring.svc:9090"

    def __post_init__(self) -> None:
        # lists (from JSON or TOML) become tuples so the spec stays hashable and comparable
        if isinstance(self.steps, list):
            object.__setattr__(self, "steps", tuple(self.steps))
        if isinstance(self.checks, list):
            object.__setattr__(self, "checks", tuple(self.checks))
        if self.mode not in MODES:
            raise _fail(f"Delivery mode {self.mode!r} is not known.", f"Use one of {', '.join(MODES)}.")
        if (
            not isinstance(self.steps, tuple)
            or not self.steps
            or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 99 for s in self.steps)
        ):
            raise _fail(
                f"Delivery steps {self.steps!r} must be canary weights in percent, each from 1 to 99.",
                "Write them like (10, 25, 50): the new version takes all traffic after the last one.",
            )
        if any(b <= a for a, b in zip(self.steps, self.steps[1:])):
            raise _fail(
                f"Delivery steps {self.steps!r} must increase.",
                "Each step gives the new version more traffic, e.g. (10, 25, 50).",
            )
        for name in ("pause", "interval", "window"):
            _duration(name, getattr(self, name))
        for name, low in (("count", 1), ("failure_limit", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise _fail(f"Delivery setting {name}={value!r} must be an integer >= {low}.",
                            f"Set {name} to a whole number of measurements.")
        if self.failure_limit >= self.count:
            # Argo fails an analysis when failures exceed failureLimit: with failure_limit >= count it never can.
            raise _fail(
                f"Delivery failure_limit={self.failure_limit} tolerates all {self.count} measurements failing.",
                "Make failure_limit smaller than count (the default tolerates 1 failure out of 3).",
            )
        ratio = self.max_error_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
            raise _fail(f"Delivery setting max_error_ratio={ratio!r} must be between 0 and 1 (a share).",
                        "0.01 lets 1 % of /predict answers be server errors.")
        if self.checks is not None:
            if not isinstance(self.checks, tuple) or not self.checks:
                raise _fail(
                    f"Delivery checks {self.checks!r} must name at least one check.",
                    f"Pick from {', '.join(CHECKS)}, leave checks unset to pick automatically, or use mode "
                    "'rolling' for no analysis.",
                )
            unknown = [c for c in self.checks if c not in CHECKS]
            if unknown or len(set(self.checks)) != len(self.checks):
                raise _fail(f"Delivery checks {self.checks!r} have unknown or repeated names.",
                            f"Each check at most once, from {', '.join(CHECKS)}.")
        if not isinstance(self.prometheus, str) or not re.match(r"^https?://[^/\s]+", self.prometheus):
            raise _fail(f"Delivery setting prometheus={self.prometheus!r} is not an http(s) URL.",
                        "Give the Prometheus address the rollout controller reaches, e.g. http://prometheus:9090.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``handoff.json``); :meth:`from_dict` reads it back.

        Example:
            >>> DeliverySpec.from_dict(DeliverySpec().to_dict()) == DeliverySpec()
            True
        """
        out = asdict(self)
        out["steps"] = list(self.steps)
        out["checks"] = None if self.checks is None else list(self.checks)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeliverySpec:
        """The spec :meth:`to_dict` wrote; missing keys take their defaults, unknown keys are refused.

        Example:
            >>> DeliverySpec.from_dict({"mode": "flagger"}).mode
            'flagger'
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise _fail(f"Delivery settings {', '.join(unknown)} are not known.",
                        f"Use only {', '.join(sorted(known))}.")
        values = dict(data)
        for key in ("steps", "checks"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)


def _number(value: float) -> str:
    """A float as Argo's expression language and PromQL read it (no exponent)."""
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = f"{value:.15f}".rstrip("0").rstrip(".")
    return text


@dataclass(frozen=True)
class Check:
    """One measurement of the analysis: a PromQL ``query`` whose single value must satisfy ``op threshold``.

    Example:
        >>> c = Check("errors", "sum(...)", "<=", 0.01)
        >>> c.condition(), c.passes(0.002), c.passes(float("nan"))
        ('result[0] <= 0.01', True, False)
    """

    name: str
    query: str
    op: str
    threshold: float

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise _fail(f"Check {self.name!r} has operator {self.op!r}.", f"Use one of {', '.join(OPS)}.")

    def condition(self) -> str:
        """The Argo Rollouts ``successCondition`` (the query's first value against the threshold)."""
        return f"result[0] {self.op} {_number(self.threshold)}"

    def passes(self, value: float) -> bool:
        """Whether a measured ``value`` passes, as Argo would judge it (NaN, i.e. no requests, fails)."""
        if math.isnan(value):
            return False
        return value <= self.threshold if self.op == "<=" else value < self.threshold


_UNITS = (("_ms", 1e-3), ("_us", 1e-6), ("_seconds", 1.0), ("_s", 1.0))


def _gate_metric(result: Mapping[str, Any], specs: Mapping[str, Mapping[str, Any]]) -> tuple[str, str] | None:
    """(metric, op) of a threshold gate result: its details, else the spec it was evaluated from."""
    for source in (result.get("details"), result.get("spec"), specs.get(str(result.get("name")))):
        if isinstance(source, Mapping) and source.get("metric") and source.get("op"):
            return str(source["metric"]), str(source["op"])
    return None


def latency_budget(gate_report: Mapping[str, Any] | None) -> float | None:
    """The model's latency budget in seconds, from its gate report; None when it has no latency gate.

    The budget is the threshold of a *blocking threshold* gate whose metric name contains ``latency`` and whose
    operator is ``<=`` or ``<`` (a ceiling). The unit is read from the metric name's suffix: ``_ms`` is
    milliseconds, ``_us`` microseconds, ``_s``, ``_seconds`` or no suffix seconds. With several such gates
    the smallest budget wins. Results of other kinds (e.g. the smoke test's ``latency``, in milliseconds with
    no unit in its name) are not read. The canary compares the budget with the p99 of ``/predict``.

    Example:
        >>> latency_budget({"results": [{"name": "threshold.latency_p99_ms", "kind": "threshold",
        ...     "blocking": True, "threshold": 250.0, "details": {"metric": "latency_p99_ms", "op": "<="}}]})
        0.25
    """
    if not gate_report:
        return None
    specs = {
        str(s.get("name")): s for s in gate_report.get("specs") or () if isinstance(s, Mapping) and s.get("name")
    }
    budgets = []
    for result in gate_report.get("results") or ():
        if result.get("kind") != "threshold" or not result.get("blocking", True):
            continue
        found = _gate_metric(result, specs)
        threshold = result.get("threshold")
        if found is None or threshold is None:
            continue
        metric, op = found
        if "latency" not in metric.lower() or op not in OPS:
            continue
        scale = next((factor for suffix, factor in _UNITS if metric.lower().endswith(suffix)), 1.0)
        budgets.append(float(threshold) * scale)
    return min(budgets) if budgets else None


def _queries(spec: HandoffSpec) -> dict[str, str]:
    window = spec.delivery.window
    return {
        # each keeps one series (no "by"): Argo reads result[0]
        "errors": error_ratio_query(spec, window),
        "latency": latency_p99_query(spec, window),
        # max over workers and pods: one replica whose window drifts fails the version
        "drift": f"max(shipyard_dataset_drift{{{shipyard_selector(spec)}}})",
    }


def checks(spec: HandoffSpec) -> list[Check]:
    """The analysis of ``spec``'s model version, in :data:`CHECKS` order.

    With ``spec.delivery.checks`` unset: ``errors`` always, ``latency`` when the gate report has a latency gate
    (:func:`latency_budget`), ``drift`` when the image has a reference profile.

    Raises:
        DeployError: a check was asked for that this model cannot have.

    Example:
        >>> [c.name for c in checks(spec)]    # doctest: +SKIP
        ['errors', 'latency', 'drift']
    """
    delivery = spec.delivery
    budget = latency_budget(spec.gate_report)
    has_profile = spec.reference_profile is not None
    wanted = delivery.checks
    if wanted is None:
        wanted = tuple(c for c in CHECKS if c == "errors" or (c == "latency" and budget is not None)
                       or (c == "drift" and has_profile))
    if "latency" in wanted and budget is None:
        raise _fail(
            f"The latency check was asked for, but {spec.model_name} v{spec.version} has no latency gate.",
            "Log the latency the model must meet (e.g. shipyard.log_metric('latency_p99_ms', ...)) and gate it with "
            "shipyard.gates.threshold('latency_p99_ms <= 250'), or drop 'latency' from the analysis_checks setting.",
        )
    if "drift" in wanted and not has_profile:
        raise _fail(
            f"The drift check was asked for, but the image of {spec.model_name} v{spec.version} has no reference "
            "profile, so it exports no drift gauges.",
            "Package the version from a run that logged its training data profile, or drop 'drift' from the "
            "delivery checks.",
        )
    query = _queries(spec)
    thresholds = {"errors": float(delivery.max_error_ratio), "latency": budget, "drift": 0.0}
    return [Check(name, query[name], "<=", float(thresholds[name])) for name in CHECKS if name in wanted]


def _labels(spec: HandoffSpec) -> dict[str, str]:
    from .handoff import object_labels

    return object_labels(spec)


def _meta(spec: HandoffSpec, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": spec.namespace, "labels": _labels(spec)}


def _service(spec: HandoffSpec, name: str) -> dict[str, Any]:
    from .handoff import service

    return service(spec, name)


def _analysis_template(spec: HandoffSpec, analysis: list[Check]) -> dict[str, Any]:
    d = spec.delivery
    metrics = [
        {
            "name": c.name,
            "interval": d.interval,
            "count": d.count,
            "failureLimit": d.failure_limit,
            "successCondition": c.condition(),
            "provider": {"prometheus": {"address": d.prometheus, "query": c.query}},
        }
        for c in analysis
    ]
    return {
        "apiVersion": _ROLLOUTS,
        "kind": "AnalysisTemplate",
        "metadata": _meta(spec, f"{spec.app}-analysis"),
        "spec": {"metrics": metrics},
    }


def _rollout(spec: HandoffSpec, strategy: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": _ROLLOUTS,
        "kind": "Rollout",
        "metadata": _meta(spec, spec.app),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": spec.app}},
            # The Deployment only carries the pod template, at 0 replicas, so that Argo CD or Flux never fight
            # the rollout controller over its scale: nothing is left for the controller to scale down.
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.app, "scaleDown": "never"},
            "strategy": strategy,
        },
    }


def delivery_objects(spec: HandoffSpec) -> dict[str, dict[str, Any]]:
    """The ``base/`` files (name -> object) of ``spec.delivery.mode``; ``{}`` for ``rolling``.

    Raises:
        DeployError: a requested check is not available (see :func:`checks`).

    Example:
        >>> sorted(delivery_objects(spec))    # doctest: +SKIP
        ['analysis-template.yaml', 'rollout.yaml', 'service-canary.yaml', 'service-stable.yaml']
    """
    d, app = spec.delivery, spec.app
    if d.mode == "rolling":
        return {}
    analysis = checks(spec)
    if d.mode == "flagger":
        return _flagger(spec, analysis)
    template = [{"templateName": f"{app}-analysis"}]
    if d.mode == "argo-canary":
        steps: list[dict[str, Any]] = []
        for weight in d.steps:
            steps += [{"setWeight": weight}, {"pause": {"duration": d.pause}}, {"analysis": {"templates": template}}]
        strategy = {"canary": {"canaryService": f"{app}-canary", "stableService": f"{app}-stable", "steps": steps}}
        services = {"service-canary.yaml": _service(spec, f"{app}-canary"),
                    "service-stable.yaml": _service(spec, f"{app}-stable")}
    else:
        # Auto-promotion stays on: the pre-promotion analysis on the preview decides, the post-promotion one
        # rolls back to the old pods (kept until it ends) when live traffic fails.
        # The base Service <app> is the active one, so what clients call only ever reaches analysed pods.
        strategy = {"blueGreen": {
            "activeService": app,
            "previewService": f"{app}-preview",
            "prePromotionAnalysis": {"templates": template},
            "postPromotionAnalysis": {"templates": template},
        }}
        services = {"service-preview.yaml": _service(spec, f"{app}-preview")}
    return {
        "rollout.yaml": _rollout(spec, strategy),
        **services,
        "analysis-template.yaml": _analysis_template(spec, analysis),
    }


def _flagger(spec: HandoffSpec, analysis: list[Check]) -> dict[str, dict[str, Any]]:
    d, app = spec.delivery, spec.app
    out: dict[str, dict[str, Any]] = {}
    metrics = []
    for c in analysis:
        name = f"{app}-{c.name}"
        out[f"metric-{c.name}.yaml"] = {
            "apiVersion": _FLAGGER,
            "kind": "MetricTemplate",
            "metadata": _meta(spec, name),
            "spec": {"provider": {"type": "prometheus", "address": d.prometheus}, "query": c.query},
        }
        # thresholdRange.max is inclusive, as every generated check's "<=" is
        # no templateRef namespace: Flagger then looks in the Canary's own, which each overlay sets
        metrics.append({"name": c.name, "templateRef": {"name": name},
                        "thresholdRange": {"max": c.threshold}, "interval": d.window})
    canary = {
        "apiVersion": _FLAGGER,
        "kind": "Canary",
        "metadata": _meta(spec, app),
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
            "service": {"port": 80, "portName": "http", "targetPort": "http"},
            "analysis": {
                "interval": d.interval,
                # Flagger rolls back when failed checks reach threshold; Argo when they exceed failureLimit.
                "threshold": d.failure_limit + 1,
                "maxWeight": max(d.steps),
                "stepWeights": list(d.steps),
                "metrics": metrics,
            },
        },
    }
    return {"canary.yaml": canary, **out}


def gitops_objects(spec: HandoffSpec) -> dict[str, dict[str, Any]]:
    """An Argo CD ``Application`` (``argocd/<overlay>.yaml``) and a Flux ``Kustomization`` (``flux/<overlay>.yaml``)
    per overlay, pointing at ``<gitops.path>/overlays/<overlay>``; ``{}`` when ``spec.gitops`` is None.

    Apply one of the two sets, depending on the cluster's GitOps controller.

    Example:
        >>> sorted(gitops_objects(spec))    # doctest: +SKIP
        ['argocd/production.yaml', 'argocd/staging.yaml', 'flux/production.yaml', 'flux/staging.yaml']
    """
    source = spec.gitops
    if source is None:
        return {}
    base = source.path.strip("/")
    out: dict[str, dict[str, Any]] = {}
    for overlay in spec.overlays:
        name, path = f"{spec.app}-{overlay.name}", f"{base}/overlays/{overlay.name}"
        labels = {**_labels(spec), names.K8S_ENVIRONMENT: overlay.name}
        out[f"argocd/{overlay.name}.yaml"] = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "namespace": source.argocd_namespace, "labels": labels},
            "spec": {
                "project": source.argocd_project,
                "source": {"repoURL": source.url, "targetRevision": source.revision, "path": path},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": overlay.namespace},
                "syncPolicy": {"automated": {"prune": True, "selfHeal": True},
                               "syncOptions": ["CreateNamespace=true"]},
            },
        }
        out[f"flux/{overlay.name}.yaml"] = {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": _FLUX_NAMESPACE, "labels": labels},
            "spec": {
                "interval": "5m",
                "path": f"./{path}",
                "prune": True,
                "sourceRef": {"kind": "GitRepository", "name": source.flux_source},
                "targetNamespace": overlay.namespace,
                "wait": True,
                "timeout": "10m",
            },
        }
    return out


@functools.cache
def _schema(file_name: str) -> dict[str, Any] | None:
    from importlib.resources import files

    resource = files(__package__).joinpath(_SCHEMAS, file_name)
    if not resource.is_file():
        return None
    return json.loads(resource.read_text(encoding="utf-8"))


def schema_file(api_version: str, kind: str) -> str:
    """The file in ``schemas/`` holding the schema of ``api_version``/``kind``.

    Example:
        >>> schema_file("argoproj.io/v1alpha1", "Rollout")
        'argoproj.io_v1alpha1_rollout.json'
    """
    group, _, version = api_version.rpartition("/")
    return f"{group or 'core'}_{version}_{kind.lower()}.json"


def validate_custom(obj: Mapping[str, Any]) -> None:
    """Check a custom resource against its CRD's schema, strictly (an unknown field fails).

    Known: Argo Rollouts ``Rollout`` and ``AnalysisTemplate``, Flagger ``Canary`` and ``MetricTemplate``,
    Argo CD ``Application``, Flux ``Kustomization``, the Prometheus Operator's ``PrometheusRule``.

    Raises:
        DeployError: the object does not match, or its apiVersion/kind has no schema here.

    Example:
        >>> validate_custom({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "iris"},
        ...                  "spec": {"replicaz": 2}})    # doctest: +ELLIPSIS
        Traceback (most recent call last):
        shipyard._core.errors.DeployError: Rollout iris is not valid: at spec: Additional properties are not ...
    """
    import jsonschema

    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    schema = _schema(schema_file(api_version, kind))
    name = (obj.get("metadata") or {}).get("name", "?") if isinstance(obj.get("metadata"), Mapping) else "?"
    if schema is None:
        raise _fail(
            f"There is no schema for {api_version or '(no apiVersion)'} {kind or '(no kind)'} ({name}).",
            "Only the custom resources shipyard generates can be checked; use kubernetes-validate for built-in "
            "kinds.",
        )
    validator = jsonschema.Draft7Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(dict(obj)))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise _fail(
            f"{kind} {name} is not valid: at {where}: {error.message}",
            "This is a bug in the bundle generator or in a file edited by hand; compare with a fresh bundle.",
        )


def _namespaces(spec: HandoffSpec) -> list[str]:
    names = [o.namespace for o in spec.overlays]
    return list(dict.fromkeys(names)) or [spec.namespace]


def readme_lines(spec: HandoffSpec) -> list[str]:
    """The README section (Markdown lines) on rolling out this bundle: the commands for its mode and GitOps.

    Example:
        >>> readme_lines(spec)[0]    # doctest: +SKIP
        '## Progressive delivery (argo-canary)'
    """
    d, app = spec.delivery, spec.app
    ns = _namespaces(spec)
    lines = [f"## Progressive delivery ({d.mode})", ""]
    if d.mode == "rolling":
        lines += ["Kubernetes' rolling update replaces the pods; only the readiness probe gates it:", "", "```bash"]
        lines += [f"kubectl rollout status deployment/{app} -n {n}" for n in ns]
        lines += ["```", ""]
    else:
        analysis = checks(spec)
        if d.mode == "argo-canary":
            lines += [
                (f"An Argo Rollouts canary: the new version gets {', '.join(f'{s} %' for s in d.steps)} of the "
                 f"pods in turn, each held {d.pause}, then analysed ({d.count} measurements every {d.interval}, "
                 f"{d.failure_limit} failure(s) tolerated); a failed analysis rolls back. Weights follow pod "
                 "counts unless a traffic router is configured."),
            ]
        elif d.mode == "argo-bluegreen":
            lines += [
                (f"An Argo Rollouts blue/green: the new pods start behind `{app}-preview`; the analysis must pass "
                 f"on them (send test traffic to `{app}-preview`: no traffic is not a pass) before `{app}` "
                 "switches, and again on live traffic after the switch, or the rollout goes back."),
            ]
        else:
            lines += [
                (f"A Flagger canary: weights {', '.join(f'{s} %' for s in d.steps)}, one step per {d.interval} "
                 f"while the analysis passes; {d.failure_limit + 1} failed check(s) roll back. Weighted traffic "
                 "needs a mesh or ingress provider in Flagger (`spec.provider` or its `-mesh-provider` flag). "
                 f"Flagger creates the `{app}`, `{app}-primary` and `{app}-canary` Services itself."),
            ]
        lines += ["", "| check | query | passes when |", "|---|---|---|"]
        for c in analysis:
            query = c.query.replace("|", "\\|")
            lines.append(f"| {c.name} | `{query}` | `{c.op} {_number(c.threshold)}` |")
        lines += ["", "```bash"]
        for n in ns:
            if d.mode == "flagger":
                lines += [f"kubectl get canary/{app} -n {n} --watch", f"kubectl describe canary/{app} -n {n}"]
            else:
                lines += [
                    f"kubectl argo rollouts get rollout {app} -n {n} --watch",
                    f"kubectl argo rollouts promote {app} -n {n}    # "
                    + ("skip the remaining steps" if d.mode == "argo-canary" else "switch to the new pods now"),
                    f"kubectl argo rollouts abort {app} -n {n}      # back to the stable version",
                ]
        lines += ["```", ""]
        if d.mode != "flagger":
            lines += [
                ("The Deployment holds only the pod template (`workloadRef`), at 0 replicas; the Rollout owns the "
                 "pods. Argo CD needs no extra configuration for Rollouts (it knows their health)."),
                "",
            ]
    source = spec.gitops
    if source is not None:
        where = f"`{source.path.strip('/')}/overlays/<overlay>` of {source.url} ({source.revision})"
        lines += ["### GitOps", "", f"`argocd/` and `flux/` point at {where}; apply the set your cluster runs:",
                  "", "```bash"]
        for overlay in spec.overlays:
            name = f"{app}-{overlay.name}"
            lines += [
                f"kubectl apply -f argocd/{overlay.name}.yaml && argocd app sync {name}",
                f"kubectl apply -f flux/{overlay.name}.yaml && "
                + f"flux reconcile kustomization {name} -n {_FLUX_NAMESPACE} --with-source",
            ]
        lines += ["```", ""]
    return lines
