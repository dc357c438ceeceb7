"""Handoff bundles: what an engineer deploys, reviews and keeps.

A bundle is a directory per model version::

    k8s/deployment.yaml          Deployment pinned to the image, non-root, probes, resources,
                                 Prometheus scrape annotations
    k8s/service.yaml             ClusterIP Service in front of it
    k8s/canary-deployment.yaml   only with a canary weight: the new image beside the previous one
    k8s/prometheus-rule.yaml     the version's alerts as a Prometheus Operator ``PrometheusRule``
    k8s/kustomization.yaml       all of the above, for ``kubectl apply -k k8s/``
    alerts/rules.yaml            the same alerts as a plain Prometheus rule file (no operator)
    reference-profile.json       the reference profile the image measures drift against, when known
    handoff.json                 lineage (model digest included), image reference and id, gate verdicts,
                                 overrides, approvals
    gate-report.json             the model version's gate report
    sbom.cdx.json                CycloneDX SBOM of the image's Python packages
    README.md                    how to deploy, check and roll back

Manifests are validated against the Kubernetes API schema
(``kubernetes-validate``) and the SBOM is written by ``cyclonedx-python-lib``.
:func:`read_bundle` gives back the :class:`HandoffSpec` a bundle was written
from, so a rollback or a review never re-parses the files by hand.

Q: What does the Deployment pin when the image was not pushed to a registry?
A: The image's local tag (``shipyard/iris:v3-<bento content hash>``), which
   ``docker image inspect`` and a node that was given the image (``kind load
   docker-image``, ``docker save | ctr import``) resolve. ``repo@<image id>``
   resolves nowhere: an image id is the digest of the image's configuration,
   not of a manifest a registry stores. The tag names the bento's content, and
   ``handoff.json`` keeps the image id beside it (``image.digest``), so anyone
   can check that the tag still names that image.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._core import lineage as names
from .._core.errors import DeployError
from .._core.lineage import Lineage
from .._core.workspace import slug
from .alerts import AlertThresholds

KUBERNETES_VERSION = "1.30.0"
SERVICE_PORT = 3000  # BentoML's HTTP port
RULE_FILE = "prometheus-rule.yaml"
REFERENCE_FILE = "reference-profile.json"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # the OCI distribution spec's tag grammar


@dataclass(frozen=True)
class Resources:
    cpu_request: str = "250m"
    memory_request: str = "512Mi"
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"


@dataclass(frozen=True)
class HandoffSpec:
    """Everything a bundle is made from.

    Attributes:
        model_name: registered model name.
        version: registered model version.
        image_repository: image name without tag, e.g. ``registry:5000/shipyard/iris``.
        image_digest: ``sha256:…`` manifest digest the deployment is pinned to, or the local image id
            when the image was not pushed (then ``local_tag`` is what the deployment uses).
        run_as_user: numeric uid of the image's non-root user.
        replicas: pods of the stable deployment.
        canary_weight: percent of traffic for the new image; the stable
            deployment then keeps ``previous_image`` (``repo@sha256:…``).
        python_packages: (name, version) of the Python packages in the image, for the SBOM.
        local_tag: the image's tag in the local Docker engine when it was not pushed
            (``image`` is then ``image_repository:local_tag``).
        alerts: thresholds and ``for:`` durations of the bundle's alerting rules (:mod:`.alerts`).
        reference_profile: the reference profile frozen into the image, written as ``reference-profile.json``.
    """

    model_name: str
    version: str
    image_repository: str
    image_digest: str
    run_as_user: int
    lineage: Lineage = field(default_factory=Lineage)
    gate_report: Mapping[str, Any] = field(default_factory=dict)
    overrides: tuple[Mapping[str, Any], ...] = ()
    approvals: tuple[Mapping[str, Any], ...] = ()
    image_facts: Mapping[str, Any] = field(default_factory=dict)
    python_packages: tuple[tuple[str, str], ...] = ()
    replicas: int = 2
    resources: Resources = field(default_factory=Resources)
    canary_weight: int | None = None
    previous_image: str | None = None
    namespace: str = "default"
    local_tag: str | None = None
    alerts: AlertThresholds = field(default_factory=AlertThresholds)
    reference_profile: dict[str, Any] | None = None

    @property
    def image(self) -> str:
        """The reference the deployment uses: ``repo@sha256:…`` when pushed, else the local ``repo:tag``."""
        if self.local_tag:
            return f"{self.image_repository}:{self.local_tag}"
        return f"{self.image_repository}@{self.image_digest}"

    @property
    def app(self) -> str:
        """The Kubernetes name of the model's objects: the model's slug (a valid DNS label)."""
        return slug(self.model_name)


@dataclass(frozen=True)
class HandoffBundle:
    """A written bundle: its directory and the files in it."""

    path: Path
    files: tuple[str, ...]
    image: str

    def manifest(self, name: str) -> dict[str, Any]:
        import yaml

        return yaml.safe_load((self.path / "k8s" / name).read_text())

    @property
    def handoff(self) -> dict[str, Any]:
        return json.loads((self.path / "handoff.json").read_text())


def _check(spec: HandoffSpec) -> None:
    if not _DIGEST.match(spec.image_digest):
        raise DeployError(
            f"Image digest {spec.image_digest!r} of {spec.model_name} v{spec.version} is not a sha256 digest.",
            hint="Push the image first; the bundle pins the digest the registry reported.",
        )
    if spec.local_tag is not None and not _TAG.match(spec.local_tag):
        raise DeployError(
            f"Image tag {spec.local_tag!r} of {spec.model_name} v{spec.version} is not a valid image tag.",
            hint="Use the tag shipyard gave the image when it built it (see `docker image ls`).",
        )
    if spec.run_as_user == 0:
        raise DeployError(
            f"The image for {spec.model_name} v{spec.version} runs as root (uid 0).",
            hint="Rebuild it with shipyard, which creates a non-root user.",
        )
    if spec.canary_weight is not None:
        if not 0 < spec.canary_weight < 100:
            raise DeployError(f"Canary weight {spec.canary_weight} must be between 1 and 99 percent.")
        if not spec.previous_image:
            raise DeployError(
                "A canary needs the previous image to keep serving the rest of the traffic.",
                hint="Promote without a canary the first time, or pass previous_image.",
            )


def _labels(spec: HandoffSpec, track: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": spec.app,
        "app.kubernetes.io/version": slug(f"v{spec.version}"),
        "app.kubernetes.io/managed-by": "shipyard",
        names.K8S_TRACK: track,
    }


def _deployment(spec: HandoffSpec, *, name: str, image: str, replicas: int, track: str) -> dict[str, Any]:
    labels = _labels(spec, track)
    selector = {"app.kubernetes.io/name": spec.app, names.K8S_TRACK: track}
    probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3}
    r = spec.resources
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": spec.namespace,
            "labels": labels,
            "annotations": {
                names.K8S_MODEL: f"{spec.model_name}/{spec.version}",
                names.K8S_RUN_ID: spec.lineage.run_id,
            },
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(SERVICE_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": spec.run_as_user,
                        "runAsGroup": spec.run_as_user,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "model",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"name": "http", "containerPort": SERVICE_PORT, "protocol": "TCP"}],
                            "resources": {
                                "requests": {"cpu": r.cpu_request, "memory": r.memory_request},
                                "limits": {"cpu": r.cpu_limit, "memory": r.memory_limit},
                            },
                            "readinessProbe": probe,
                            "livenessProbe": {
                                "httpGet": {"path": "/livez", "port": "http"},
                                "initialDelaySeconds": 10,
                                "periodSeconds": 10,
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def manifests(spec: HandoffSpec) -> dict[str, dict[str, Any]]:
    """The Kubernetes objects of a bundle, by file name."""
    _check(spec)
    objects: dict[str, dict[str, Any]] = {}
    if spec.canary_weight is None:
        objects["deployment.yaml"] = _deployment(
            spec, name=spec.app, image=spec.image, replicas=spec.replicas, track="stable"
        )
    else:
        # Plain Kubernetes splits traffic by pod count behind one Service.
        canary = max(1, round(spec.replicas * spec.canary_weight / (100 - spec.canary_weight)))
        objects["deployment.yaml"] = _deployment(
            spec, name=spec.app, image=spec.previous_image or "", replicas=spec.replicas, track="stable"
        )
        objects["canary-deployment.yaml"] = _deployment(
            spec, name=f"{spec.app}-canary", image=spec.image, replicas=canary, track="canary"
        )
        objects["canary-deployment.yaml"]["metadata"]["annotations"][names.K8S_CANARY_WEIGHT] = str(
            spec.canary_weight
        )
    objects["service.yaml"] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": spec.app, "namespace": spec.namespace, "labels": {"app.kubernetes.io/name": spec.app}},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": spec.app},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return objects


def validate_manifest(obj: Mapping[str, Any], version: str = KUBERNETES_VERSION) -> None:
    """Validate one object against the Kubernetes API schema (strict: unknown fields fail)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(dict(obj), version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        raise DeployError(
            f"{obj.get('kind')} {obj.get('metadata', {}).get('name')} is not valid Kubernetes {version}: "
            f"{exc.message} (at {where or 'top level'}).",
            hint="This is a bug in the bundle generator or in a value you passed; the bundle was not written.",
        ) from exc


def sbom(spec: HandoffSpec) -> str:
    """CycloneDX 1.6 JSON for the image's Python packages."""
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    bom = Bom()
    bom.metadata.component = Component(
        name=spec.image_repository,
        version=spec.image_digest,
        type=ComponentType.CONTAINER,
        bom_ref=spec.image,
    )
    for name, version in sorted(set(spec.python_packages)):
        bom.components.add(
            Component(
                name=name,
                version=version,
                type=ComponentType.LIBRARY,
                purl=PackageURL(type="pypi", name=name.lower(), version=version),
                bom_ref=f"pkg:pypi/{name.lower()}@{version}",
            )
        )
    return JsonV1Dot6(bom).output_as_string(indent=2)


def write_bundle(spec: HandoffSpec, directory: Path) -> HandoffBundle:
    """Render, validate and write a bundle into ``directory`` (replaced atomically).

    Raises:
        DeployError: a value would produce an invalid or unsafe manifest.

    Example:
        >>> bundle = write_bundle(spec, ws.bundles_dir / "iris" / "3")   # doctest: +SKIP
        >>> bundle.handoff["image"]["digest"]                           # doctest: +SKIP
    """
    import shutil
    import tempfile

    import yaml

    from .alerts import prometheus_rule, rule_groups

    objects = manifests(spec)
    for obj in objects.values():
        validate_manifest(obj)
    # A custom resource: kubernetes-validate knows only the core kinds, so it is not validated with them.
    rule = prometheus_rule(spec)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [*objects, RULE_FILE],
    }
    handoff = {
        "model": {"name": spec.model_name, "version": spec.version},
        "image": {"repository": spec.image_repository, "digest": spec.image_digest, "reference": spec.image,
                  "local_tag": spec.local_tag,
                  **{k: v for k, v in spec.image_facts.items() if k not in ("digest", "local_tag")}},
        "lineage": spec.lineage.to_dict(),
        "gates": {
            "verdict": spec.gate_report.get("verdict"),
            "results": [
                {k: g.get(k) for k in ("name", "status", "blocking", "message")}
                for g in spec.gate_report.get("results", [])
            ],
        },
        "overrides": [dict(o) for o in spec.overrides],
        "approvals": [dict(a) for a in spec.approvals],
        "canary_weight": spec.canary_weight,
        "deployment": {
            "run_as_user": spec.run_as_user,
            "replicas": spec.replicas,
            "resources": asdict(spec.resources),
            "previous_image": spec.previous_image,
            "namespace": spec.namespace,
        },
        "alerts": asdict(spec.alerts),
        "kubernetes_version": KUBERNETES_VERSION,
    }
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        (staging / "k8s").mkdir()
        for name, obj in objects.items():
            (staging / "k8s" / name).write_text(yaml.safe_dump(obj, sort_keys=False))
        (staging / "k8s" / RULE_FILE).write_text(yaml.safe_dump(rule, sort_keys=False))
        (staging / "k8s" / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
        (staging / "alerts").mkdir()
        (staging / "alerts" / "rules.yaml").write_text(yaml.safe_dump(rule_groups(spec), sort_keys=False))
        if spec.reference_profile is not None:
            (staging / REFERENCE_FILE).write_text(json.dumps(spec.reference_profile, indent=2, sort_keys=True) + "\n")
        (staging / "handoff.json").write_text(json.dumps(handoff, indent=2, sort_keys=True, default=str) + "\n")
        (staging / "gate-report.json").write_text(json.dumps(dict(spec.gate_report), indent=2, default=str) + "\n")
        (staging / "sbom.cdx.json").write_text(sbom(spec))
        (staging / "README.md").write_text(_readme(spec, objects))
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = tuple(sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()))
    return HandoffBundle(directory, files, spec.image)


def _readme(spec: HandoffSpec, objects: Mapping[str, Any]) -> str:
    verdict = spec.gate_report.get("verdict", "unknown")
    a = spec.alerts
    lines = [
        f"# {spec.model_name} version {spec.version}",
        "",
        f"Image: `{spec.image}` (runs as uid {spec.run_as_user}).",
        *(
            [
                "",
                "The image was not pushed to a registry: give it to the cluster's nodes first, e.g.",
                f"`kind load docker-image {spec.image}`, or",
                f"`docker save {spec.image} | ctr -n k8s.io images import -` on each node.",
                "",
            ]
            if spec.local_tag
            else []
        ),
        f"Gate verdict: **{verdict}**"
        + (f", with {len(spec.overrides)} recorded override(s)" if spec.overrides else "")
        + ".",
        "",
        "## Deploy",
        "",
        "```bash",
        *(f"kubectl apply -f k8s/{name}" for name in objects),
        f"kubectl rollout status deployment/{spec.app} -n {spec.namespace}",
        "```",
        "",
        f"With the Prometheus Operator installed, `kubectl apply -k k8s/` applies these and `k8s/{RULE_FILE}`.",
        "",
        "## Check",
        "",
        f"Readiness: `GET /readyz`; liveness: `GET /livez`; metrics: `GET /metrics` on port {SERVICE_PORT}.",
        "Lineage, gate results and approvals are in `handoff.json`; the image's Python packages in",
        "`sbom.cdx.json` (CycloneDX).",
        "",
        "## Alerts",
        "",
        f"`k8s/{RULE_FILE}` (a `PrometheusRule`, for the Prometheus Operator) and `alerts/rules.yaml` (the same",
        "rules for a Prometheus without the operator: list it under `rule_files:`) alert on:",
        "",
        f"- `ShipyardDriftDetected` (warning): an input column drifted, for {a.drift_for};",
        (
            f"- `ShipyardHighErrorRatio` (critical): more than {a.error_ratio:.0%} of `/predict` answers are 5xx "
            f"over {a.rate_window}, for {a.error_for};"
        ),
        (
            f"- `ShipyardHighLatencyP99` (warning): `/predict` p99 latency above {a.latency_p99_seconds:g} s over "
            f"{a.rate_window}, for {a.latency_for};"
        ),
        f"- `ShipyardMonitorDropped` (warning): the drift monitor dropped samples in the last {a.dropped_window}.",
        "",
        *(
            [f"`{REFERENCE_FILE}` is the reference profile the image measures drift against.", ""]
            if spec.reference_profile is not None
            else []
        ),
        "## Roll back",
        "",
        f"`shipyard rollback {spec.model_name}` moves `champion` back and regenerates this bundle for the",
        "previous version.",
        "",
    ]
    return "\n".join(lines)


def read_bundle(directory: Path) -> HandoffSpec:
    """The :class:`HandoffSpec` a bundle was written from (``write_bundle(read_bundle(d), d)`` rewrites it as it was).

    Raises:
        DeployError: ``directory`` holds no bundle, or one written by an older shipyard.

    Example:
        >>> read_bundle(ws.bundle_dir("iris", "3")).image_digest    # doctest: +SKIP
        'sha256:5d41…'
    """
    try:
        handoff = json.loads((directory / "handoff.json").read_text(encoding="utf-8"))
        report = json.loads((directory / "gate-report.json").read_text(encoding="utf-8"))
        sbom_doc = json.loads((directory / "sbom.cdx.json").read_text(encoding="utf-8"))
        image, deployment = dict(handoff["image"]), handoff["deployment"]
        reference_path = directory / REFERENCE_FILE
        reference = json.loads(reference_path.read_text(encoding="utf-8")) if reference_path.is_file() else None
    except (OSError, ValueError, KeyError) as exc:
        raise DeployError(
            f"{directory} holds no readable handoff bundle ({type(exc).__name__}: {exc}).",
            hint="Promote the version again with shipyard.promote() to write its bundle.",
        ) from exc
    return HandoffSpec(
        model_name=handoff["model"]["name"],
        version=str(handoff["model"]["version"]),
        image_repository=image.pop("repository"),
        image_digest=image.pop("digest"),
        local_tag=image.pop("local_tag", None),
        run_as_user=int(deployment["run_as_user"]),
        lineage=Lineage.from_dict(handoff.get("lineage") or {}),
        gate_report=report,
        overrides=tuple(handoff.get("overrides") or ()),
        approvals=tuple(handoff.get("approvals") or ()),
        image_facts={k: v for k, v in image.items() if k != "reference"},
        python_packages=tuple((c["name"], c["version"]) for c in sbom_doc.get("components", [])),
        replicas=int(deployment["replicas"]),
        resources=Resources(**deployment["resources"]),
        canary_weight=handoff.get("canary_weight"),
        previous_image=deployment.get("previous_image"),
        namespace=deployment["namespace"],
        alerts=AlertThresholds(**handoff.get("alerts", {})),
        reference_profile=reference,
    )
