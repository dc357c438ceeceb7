"""Handoff bundles: what an engineer deploys, reviews and keeps.

A bundle is a directory per model version, laid out for GitOps (Kustomize)::

    base/deployment.yaml         Deployment pinned to the image, non-root, read-only root filesystem,
                                 probes, resources, Prometheus scrape annotations; with ``serving_auth``,
                                 the token Secret mounted read-only (the bundle never holds the token)
    base/service.yaml            ClusterIP Service in front of it
    base/serviceaccount.yaml     the pods' ServiceAccount (no API token mounted)
    base/networkpolicy.yaml      ingress to the model's port only
    base/pdb.yaml                PodDisruptionBudget: a node drain leaves pods serving
    base/canary-deployment.yaml  only with a canary weight (delivery ``rolling``): the new image beside the
                                 previous one
    base/<delivery>.yaml         the progressive delivery objects of the ``delivery`` setting (Argo Rollouts'
                                 ``Rollout`` and ``AnalysisTemplate``, or Flagger's ``Canary`` and
                                 ``MetricTemplate``), see :mod:`.delivery`
    base/kustomization.yaml      all of the above; ``images:`` pins the image by digest
    overlays/<name>/kustomization.yaml
                                 ``staging`` and ``production``: only what differs (namespace, replicas,
                                 resources); ``kubectl apply -k overlays/production``
    argocd/<name>.yaml           an Argo CD ``Application`` per overlay   } with the ``gitops_url`` setting
    flux/<name>.yaml             a Flux ``Kustomization`` per overlay     }
    alerts/prometheus-rule.yaml  the version's alerts as a Prometheus Operator ``PrometheusRule`` (outside the
                                 overlays, so they apply on clusters without the operator)
    alerts/rules.yaml            the same alerts as a plain Prometheus rule file (no operator)
    reference-profile.json       the reference profile the image measures drift against, when known
    handoff.json                 lineage (model digest included), image reference and id, gate verdicts,
                                 overrides, approvals, delivery and its analysis queries
    gate-report.json             the model version's gate report
    sbom.cdx.json                CycloneDX SBOM of the image's Python packages
    provenance.intoto.jsonl      the image's signed provenance (in-toto statement, SLSA provenance v1, in a
                                 DSSE envelope), see :mod:`.provenance`
    model-card.md, model-card.html
                                 the version's model card (Markdown, and one self-contained HTML page), when given
    README.md                    how to deploy, check and roll back, with the real names

Core objects are validated against the Kubernetes API schema
(``kubernetes-validate``, strict), custom resources against the schemas kept in
:mod:`.delivery`, and the SBOM is written by ``cyclonedx-python-lib``.
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
import shlex
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._core import lineage as names
from .._core.errors import DeployError
from .._core.lineage import Lineage
from .._core.workspace import slug
from ..monitoring.auth import AUTH_ENV, TOKEN_FILE
from .alerts import AlertThresholds
from .delivery import DeliverySpec

KUBERNETES_VERSION = "1.30.0"
SERVICE_PORT = 3000  # BentoML's HTTP port
RULE_FILE = "prometheus-rule.yaml"
REFERENCE_FILE = "reference-profile.json"
MODEL_CARD_FILES = ("model-card.md", "model-card.html")  # written by shipyard.promotion's model card
PROVENANCE_FILE = "provenance.intoto.jsonl"  # the DSSE envelope of .provenance (its ENVELOPE_FILE)
BASE = "base"
# the built-in kinds a bundle holds; every other kind is a custom resource
CORE_KINDS = frozenset({"Deployment", "Service", "ServiceAccount", "NetworkPolicy", "PodDisruptionBudget"})
OVERLAYS = "overlays"
PRODUCTION = "production"
# Where the model server writes at run time (BentoML's home, temporary files): emptyDir volumes, so the root
# filesystem can stay read-only.
WRITABLE_PATHS = {"tmp": "/tmp"}
TOKEN_KEY = "token"  # the key of the serving token Secret, mounted as the file the service reads
TOKEN_VOLUME = "serving-token"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # the OCI distribution spec's tag grammar
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class Resources:
    cpu_request: str = "250m"
    memory_request: str = "512Mi"
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"


@dataclass(frozen=True)
class Overlay:
    """One environment of the bundle (``overlays/<name>/``): only what differs from the base."""

    name: str
    namespace: str
    replicas: int
    resources: Resources | None = None  # None: the base's

    def __post_init__(self) -> None:
        if not _DNS_LABEL.match(self.name) or not _DNS_LABEL.match(self.namespace):
            raise DeployError(
                f"Overlay {self.name!r} in namespace {self.namespace!r}: both must be DNS labels "
                "(lower-case letters, digits and '-', at most 63).",
                hint="Fix the deploy_namespace_* settings.",
            )
        if not 0 <= self.replicas <= 1000:
            raise DeployError(f"Overlay {self.name!r}: replicas={self.replicas!r} must be between 0 and 1000.")


DEFAULT_OVERLAYS = (Overlay("staging", "staging", 1), Overlay(PRODUCTION, PRODUCTION, 2))


@dataclass(frozen=True)
class GitOpsSource:
    """Where a deployment controller reads this model's bundle: the GitOps repository's URL and folder.

    Attributes:
        url: the repository URL Argo CD or Flux clones (``gitops_url`` setting).
        path: this model's folder in it (``<gitops_path>/<model slug>``).
        revision: branch or tag the controller follows.
        flux_source: name of the Flux ``GitRepository`` that holds ``url``.
        argocd_project: Argo CD project of the ``Application`` objects.
        argocd_namespace: namespace Argo CD runs in.
    """

    url: str
    path: str
    revision: str = "main"
    flux_source: str = "flux-system"
    argocd_project: str = "default"
    argocd_namespace: str = "argocd"


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
        delivery: how traffic moves to the new version and what the analysis checks (:mod:`.delivery`).
        overlays: the environments of ``overlays/`` (namespace, replicas, resources each).
        gitops: where Argo CD or Flux read the bundle; None writes no ``argocd/`` or ``flux/`` objects.
        kubernetes_version: the Kubernetes version core objects are validated against.
        model_card: file name (one of ``MODEL_CARD_FILES``) -> its text; empty writes no model card.
        auth_secret: name of the Kubernetes Secret whose ``token`` key the pods mount and require as a bearer
            token on every request but the probes and ``/metrics`` (``serving_auth``); None: no token.
        provenance: the DSSE envelope of the image's provenance statement (one JSON line), written as
            ``PROVENANCE_FILE``; empty writes none.
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
    delivery: DeliverySpec = field(default_factory=DeliverySpec)
    overlays: tuple[Overlay, ...] = DEFAULT_OVERLAYS
    gitops: GitOpsSource | None = None
    kubernetes_version: str = KUBERNETES_VERSION
    model_card: Mapping[str, str] = field(default_factory=dict)
    auth_secret: str | None = None
    provenance: str = ""

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


def token_secret_name(model_name: str) -> str:
    """The Kubernetes Secret a model's pods read their serving token from (``<model slug>-serving-token``)."""
    return f"{slug(model_name)}-serving-token"


def _resources(values: Mapping[str, str], setting: str) -> Resources:
    try:
        return Resources(**values)
    except TypeError as exc:
        raise DeployError(
            f"The {setting} setting {dict(values)} has an unknown key ({exc}).",
            hint="Use cpu_request, memory_request, cpu_limit and memory_limit, e.g. {\"cpu_limit\": \"2\"}.",
        ) from exc


def deployment_settings(settings: Any, model_name: str) -> dict[str, Any]:
    """The :class:`HandoffSpec` fields the project's settings decide (delivery, overlays, GitOps source, resources).

    Raises:
        DeployError: a setting would make an invalid bundle (an unknown resources key, a bad duration, ...).

    Example:
        >>> HandoffSpec(model_name="iris", ..., **deployment_settings(ws.settings, "iris"))    # doctest: +SKIP
    """
    s = settings
    check_kubernetes_version(s.kubernetes_version)
    resources = _resources(s.deploy_resources, "deploy_resources")
    staging = _resources(s.staging_resources, "staging_resources") if s.staging_resources else None
    gitops = None
    if s.gitops_url:
        gitops = GitOpsSource(
            url=s.gitops_url, path=f"{s.gitops_path.strip('/')}/{slug(model_name)}", revision=s.gitops_revision,
            flux_source=s.flux_source, argocd_project=s.argocd_project, argocd_namespace=s.argocd_namespace,
        )
    return {
        "kubernetes_version": s.kubernetes_version,
        "namespace": s.deploy_namespace,
        "resources": resources,
        "replicas": s.production_replicas,
        "overlays": (
            Overlay("staging", s.staging_namespace, s.staging_replicas, staging),
            Overlay(PRODUCTION, s.production_namespace, s.production_replicas),
        ),
        "gitops": gitops,
        "auth_secret": token_secret_name(model_name) if s.serving_auth else None,
        "delivery": DeliverySpec(
            mode=s.delivery, steps=tuple(s.canary_steps), pause=s.canary_pause, interval=s.analysis_interval,
            count=s.analysis_count, failure_limit=s.analysis_failure_limit, window=s.analysis_window,
            max_error_ratio=s.analysis_max_error_ratio,
            checks=tuple(s.analysis_checks) if s.analysis_checks is not None else None,
            prometheus=s.prometheus_url,
        ),
    }


@dataclass(frozen=True)
class HandoffBundle:
    """A written bundle: its directory and the files in it."""

    path: Path
    files: tuple[str, ...]
    image: str

    def manifest(self, name: str) -> dict[str, Any]:
        import yaml

        return yaml.safe_load((self.path / BASE / name).read_text())

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
    if spec.auth_secret is not None and not _DNS_SUBDOMAIN.match(spec.auth_secret):
        raise DeployError(
            f"Secret name {spec.auth_secret!r} of {spec.model_name} v{spec.version} is not a valid Kubernetes name.",
            hint="Use lower-case letters, digits, '-' and '.', at most 253 characters.",
        )
    if spec.run_as_user == 0:
        raise DeployError(
            f"The image for {spec.model_name} v{spec.version} runs as root (uid 0).",
            hint="Rebuild it with shipyard, which creates a non-root user.",
        )
    if spec.canary_weight is not None and spec.delivery.mode != "rolling":
        raise DeployError(
            f"A canary weight ({spec.canary_weight} %) and delivery {spec.delivery.mode!r} both split traffic.",
            hint="Drop --canary: the delivery's own steps (canary_steps setting) move the traffic.",
        )
    names_seen = [o.name for o in spec.overlays]
    if PRODUCTION not in names_seen or len(set(names_seen)) != len(names_seen):
        raise DeployError(
            f"The bundle's overlays {names_seen} must be distinct and include {PRODUCTION!r}.",
            hint="Keep the staging and production overlays the deploy_* settings describe.",
        )
    if spec.canary_weight is not None:
        if not 0 < spec.canary_weight < 100:
            raise DeployError(f"Canary weight {spec.canary_weight} must be between 1 and 99 percent.")
        if not spec.previous_image:
            raise DeployError(
                "A canary needs the previous image to keep serving the rest of the traffic.",
                hint="Promote without a canary the first time, or pass previous_image.",
            )


def object_labels(spec: HandoffSpec) -> dict[str, str]:
    """The labels of every object of a model version's bundle."""
    return {
        "app.kubernetes.io/name": spec.app,
        "app.kubernetes.io/version": slug(f"v{spec.version}"),
        "app.kubernetes.io/managed-by": "shipyard",
        names.K8S_APP: spec.app,
    }


def _labels(spec: HandoffSpec, track: str) -> dict[str, str]:
    return {**object_labels(spec), names.K8S_TRACK: track}


def _deployment(spec: HandoffSpec, *, name: str, image: str, replicas: int, track: str) -> dict[str, Any]:
    labels = _labels(spec, track)
    selector = {"app.kubernetes.io/name": spec.app, names.K8S_TRACK: track}
    probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3}
    r = spec.resources
    deployment = {
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
                    "serviceAccountName": spec.app,
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
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [{"name": n, "mountPath": m} for n, m in WRITABLE_PATHS.items()],
                        }
                    ],
                    "volumes": [{"name": n, "emptyDir": {"sizeLimit": "256Mi"}} for n in WRITABLE_PATHS],
                },
            },
        },
    }
    if spec.auth_secret is not None:
        _mount_token(deployment["spec"]["template"]["spec"], spec.auth_secret)
    return deployment


def _mount_token(pod: dict[str, Any], secret: str) -> None:
    """Mount ``secret``'s token read-only where the service reads it, and make the service require it.

    The mount is the file's folder (a Secret volume mounted on a single file with ``subPath`` is never
    updated, so a rotated token would not reach the pod). The file is readable by all (0444) because
    the pod runs without ``fsGroup``: Secret files belong to root, and the model's user must read it.
    ``SHIPYARD_SERVING_AUTH=1`` makes an image packaged without ``serving_auth`` require the token too.
    """
    folder, _, name = TOKEN_FILE.rpartition("/")
    container = pod["containers"][0]
    container["env"] = [*container.get("env", []), {"name": AUTH_ENV, "value": "1"}]
    container["volumeMounts"].append({"name": TOKEN_VOLUME, "mountPath": folder, "readOnly": True})
    pod["volumes"].append({
        "name": TOKEN_VOLUME,
        "secret": {"secretName": secret, "items": [{"key": TOKEN_KEY, "path": name}], "defaultMode": 0o444},
    })


def service(spec: HandoffSpec, name: str) -> dict[str, Any]:
    """A ClusterIP Service ``name`` in front of every pod of the model (port 80 to the pods' ``http`` port).

    The base Service and the ones a delivery adds (canary, stable, preview) are all this; Argo Rollouts adds
    its ReplicaSet's ``rollouts-pod-template-hash`` to the selectors of the ones it manages.
    """
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": spec.namespace, "labels": object_labels(spec)},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": spec.app},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _rollout_owns_replicas(spec: HandoffSpec) -> bool:
    return spec.delivery.mode in ("argo-canary", "argo-bluegreen")


def manifests(spec: HandoffSpec) -> dict[str, dict[str, Any]]:
    """The Kubernetes objects of a bundle, by file name."""
    _check(spec)
    objects: dict[str, dict[str, Any]] = {}
    if spec.canary_weight is None:
        # Under Argo Rollouts the Deployment only holds the pod template (the Rollout's workloadRef) and the
        # Rollout owns the replicas; a Deployment with replicas would keep its own pods beside the Rollout's.
        replicas = 0 if _rollout_owns_replicas(spec) else spec.replicas
        objects["deployment.yaml"] = _deployment(spec, name=spec.app, image=spec.image, replicas=replicas,
                                                 track="stable")
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
    meta = {"namespace": spec.namespace, "labels": object_labels(spec)}
    pods = {"matchLabels": {names.K8S_APP: spec.app}}  # every pod of the model, whichever controller made it
    if spec.delivery.mode != "flagger":
        # Flagger makes the model's Services itself (and rewrites this one's selector): a Git copy would fight it.
        # Under Argo Rollouts blue/green this is the active Service.
        objects["service.yaml"] = service(spec, spec.app)
    objects["serviceaccount.yaml"] = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": spec.app, **meta},
        "automountServiceAccountToken": False,
    }
    # Only the model's port is reachable (predictions, probes and Prometheus' scrape share it).
    objects["networkpolicy.yaml"] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": spec.app, **meta},
        "spec": {
            "podSelector": pods,
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": SERVICE_PORT}]}],
        },
    }
    # maxUnavailable (not minAvailable) so a one-replica overlay can still be drained.
    objects["pdb.yaml"] = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": spec.app, **meta},
        "spec": {"maxUnavailable": 1, "selector": pods},
    }
    return objects


def check_kubernetes_version(version: str) -> None:
    """Raise :class:`DeployError` unless kubernetes-validate has the schemas of Kubernetes ``version``."""
    from kubernetes_validate.utils import all_versions

    known = sorted(set(all_versions()), key=lambda v: tuple(int(p) for p in v.split(".")))
    if version not in known:
        raise DeployError(
            f"Kubernetes {version!r} is not a version the bundle can be validated against.",
            hint=f"Set kubernetes_version to one of {', '.join(known)}.",
        )


def validate_manifest(obj: Mapping[str, Any], version: str = KUBERNETES_VERSION) -> None:
    """Validate one object against the Kubernetes API schema (strict: unknown fields fail)."""
    import kubernetes_validate

    check_kubernetes_version(version)
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
    with warnings.catch_warnings():
        # the image is the BOM's subject and its packages are not a dependency graph: nothing to warn about
        warnings.filterwarnings("ignore", message=".*no defined dependencies.*", category=UserWarning)
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

    from . import delivery
    from .alerts import prometheus_rule, rule_groups

    base = {**manifests(spec), **delivery.delivery_objects(spec)}
    gitops = delivery.gitops_objects(spec)
    rule = prometheus_rule(spec)
    for obj in (*base.values(), *gitops.values(), rule):
        # kubernetes-validate knows only the core kinds; the CRDs' schemas are in the package
        if obj["kind"] in CORE_KINDS:
            validate_manifest(obj, spec.kubernetes_version)
        else:
            delivery.validate_custom(obj)
    checks = delivery.checks(spec) if spec.delivery.mode != "rolling" else []
    tree: dict[str, Any] = {f"{BASE}/{name}": obj for name, obj in base.items()}
    tree[f"{BASE}/kustomization.yaml"] = _base_kustomization(spec, base)
    for overlay in spec.overlays:
        tree[f"{OVERLAYS}/{overlay.name}/kustomization.yaml"] = _overlay_kustomization(spec, overlay)
    tree.update(gitops)
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
            "auth_secret": spec.auth_secret,
        },
        "alerts": asdict(spec.alerts),
        "delivery": {
            **spec.delivery.to_dict(),
            "analysis": [{"name": c.name, "query": c.query, "success_condition": c.condition()} for c in checks],
        },
        "overlays": [asdict(o) for o in spec.overlays],
        "gitops": asdict(spec.gitops) if spec.gitops else None,
        "kubernetes_version": spec.kubernetes_version,
    }
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        for name, obj in tree.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(yaml.safe_dump(obj, sort_keys=False))
        (staging / "alerts").mkdir()
        (staging / "alerts" / RULE_FILE).write_text(yaml.safe_dump(rule, sort_keys=False))
        (staging / "alerts" / "rules.yaml").write_text(yaml.safe_dump(rule_groups(spec), sort_keys=False))
        if spec.reference_profile is not None:
            (staging / REFERENCE_FILE).write_text(json.dumps(spec.reference_profile, indent=2, sort_keys=True) + "\n")
        (staging / "handoff.json").write_text(json.dumps(handoff, indent=2, sort_keys=True, default=str) + "\n")
        (staging / "gate-report.json").write_text(json.dumps(dict(spec.gate_report), indent=2, default=str) + "\n")
        (staging / "sbom.cdx.json").write_text(sbom(spec))
        if spec.provenance:
            (staging / PROVENANCE_FILE).write_text(spec.provenance, encoding="utf-8")
        for name in MODEL_CARD_FILES:
            if name in spec.model_card:
                (staging / name).write_text(spec.model_card[name], encoding="utf-8")
        (staging / "README.md").write_text(_readme(spec))
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = tuple(sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()))
    return HandoffBundle(directory, files, spec.image)


def _base_kustomization(spec: HandoffSpec, base: Mapping[str, Any]) -> dict[str, Any]:
    # images: pins the digest for tools that rewrite it (`kustomize edit set image`, image updaters); the
    # Deployment names the same reference, so `kubectl apply -f` of a single file is pinned too.
    pin = {"newTag": spec.local_tag} if spec.local_tag else {"digest": spec.image_digest}
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(base),
        "images": [{"name": spec.image_repository, **pin}],
    }


def _overlay_kustomization(spec: HandoffSpec, overlay: Overlay) -> dict[str, Any]:
    owner = "Rollout" if _rollout_owns_replicas(spec) else "Deployment"
    patches = [_patch(owner, spec.app, "/spec/replicas", overlay.replicas)]
    if overlay.resources is not None:
        r = overlay.resources
        resources = {"requests": {"cpu": r.cpu_request, "memory": r.memory_request},
                     "limits": {"cpu": r.cpu_limit, "memory": r.memory_limit}}
        patches.append(_patch("Deployment", spec.app, "/spec/template/spec/containers/0/resources", resources))
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": overlay.namespace,
        "resources": [f"../../{BASE}"],
        "labels": [{"pairs": {names.K8S_ENVIRONMENT: overlay.name}, "includeSelectors": False}],
        "patches": patches,
    }


def _patch(kind: str, name: str, path: str, value: Any) -> dict[str, Any]:
    """A kustomize JSON 6902 patch replacing one field of one object."""
    return {"target": {"kind": kind, "name": name},
            "patch": json.dumps([{"op": "replace", "path": path, "value": value}])}


def _readme(spec: HandoffSpec) -> str:
    from . import delivery

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
        "Each overlay is the base (`base/`) with its own namespace, replicas and resources:",
        "",
        "```bash",
        *(f"kubectl apply -k {OVERLAYS}/{o.name}    # namespace {o.namespace}, {o.replicas} replica(s)"
          for o in spec.overlays),
        "```",
        "",
        *_token_readme(spec),
        f"Where the Prometheus Operator runs, also `kubectl apply -f alerts/{RULE_FILE}` (namespace "
        f"{spec.namespace}; it is kept out of the overlays so they apply on clusters without the operator).",
        "",
        *delivery.readme_lines(spec),
        "## Check",
        "",
        f"Readiness: `GET /readyz`; liveness: `GET /livez`; metrics: `GET /metrics` on port {SERVICE_PORT}.",
        "Lineage, gate results and approvals are in `handoff.json`; the image's Python packages in",
        "`sbom.cdx.json` (CycloneDX).",
        *(
            [f"`{PROVENANCE_FILE}` is the image's provenance (an in-toto statement in a DSSE envelope);",
             "`shipyard verify .` checks its signature, the image's digest and the registry's verdict."]
            if spec.provenance
            else []
        ),
        *(
            ["The model card (intended use, limitations, data, metrics, gates, approvals) is `model-card.md`,",
             "and `model-card.html` as one page with its figures."]
            if spec.model_card
            else []
        ),
        "",
        "## Alerts",
        "",
        f"`alerts/{RULE_FILE}` (a `PrometheusRule`, for the Prometheus Operator) and `alerts/rules.yaml` (the same",
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
        "```bash",
        f"shipyard rollback {shlex.quote(spec.model_name)} --reason '...'",
        "```",
        "",
        "moves `champion` back to the previous version and rewrites its bundle (committed to the GitOps",
        "repository when one is configured, so the controller rolls back too).",
        "",
    ]
    return "\n".join(lines)


def _token_readme(spec: HandoffSpec) -> list[str]:
    if spec.auth_secret is None:
        return []
    return [
        "Every request but the probes and `/metrics` needs `Authorization: Bearer <token>`. The pods read the",
        f"token from the Secret `{spec.auth_secret}` (key `{TOKEN_KEY}`; one token per line, so a new one can be",
        "added before the old one is removed). The bundle holds no token: create the Secret in each namespace",
        "before the first apply, or the pods wait for it:",
        "",
        "```bash",
        "openssl rand -hex 32 > token",
        *(f"kubectl create secret generic {spec.auth_secret} --from-file={TOKEN_KEY}=token -n {ns}"
          for ns in dict.fromkeys(o.namespace for o in spec.overlays)),
        "```",
        "",
    ]


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
        delivery = {k: v for k, v in handoff.get("delivery", {}).items() if k != "analysis"}
        overlays = tuple(
            Overlay(o["name"], o["namespace"], int(o["replicas"]),
                    Resources(**o["resources"]) if o.get("resources") else None)
            for o in handoff.get("overlays") or ()
        ) or DEFAULT_OVERLAYS
        gitops = GitOpsSource(**handoff["gitops"]) if handoff.get("gitops") else None
        provenance_path = directory / PROVENANCE_FILE
        provenance = provenance_path.read_text(encoding="utf-8") if provenance_path.is_file() else ""
        card = {name: (directory / name).read_text(encoding="utf-8")
                for name in MODEL_CARD_FILES if (directory / name).is_file()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
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
        auth_secret=deployment.get("auth_secret"),
        namespace=deployment["namespace"],
        alerts=AlertThresholds(**handoff.get("alerts", {})),
        reference_profile=reference,
        delivery=DeliverySpec.from_dict(delivery),
        overlays=overlays,
        gitops=gitops,
        kubernetes_version=str(handoff.get("kubernetes_version") or KUBERNETES_VERSION),
        model_card=card,
        provenance=provenance,
    )
