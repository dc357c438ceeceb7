"""Handoff bundles: manifests valid against the Kubernetes schema, pinned by digest, safe by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import shipyard
from shipyard.deploy.handoff import HandoffSpec, manifests, validate_manifest, write_bundle
from shipyard._core.lineage import Lineage
from shipyard._core.workspace import slug
from shipyard.deploy.handoff import read_bundle
from shipyard.packaging.image import packages_from_lock

DIGEST = "sha256:" + "ab" * 32
OLD = "registry.local/shipyard/iris@sha256:" + "cd" * 32


def _spec(**overrides) -> HandoffSpec:
    values = dict(
        model_name="Iris Classifier",
        version="3",
        image_repository="registry.local/shipyard/iris",
        image_digest=DIGEST,
        run_as_user=10001,
        lineage=Lineage(model_name="Iris Classifier", model_version="3", run_id="r1", pathspec="Flow/1"),
        gate_report={"verdict": "pass", "results": [{"name": "accuracy", "status": "pass", "blocking": True}]},
        python_packages=(("scikit-learn", "1.9.1"), ("numpy", "2.4.6")),
    )
    values.update(overrides)
    return HandoffSpec(**values)


def test_deployment_is_pinned_non_root_probed_and_scraped() -> None:
    deployment = manifests(_spec())["deployment.yaml"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == f"registry.local/shipyard/iris@{DIGEST}"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert deployment["metadata"]["name"] == slug("Iris Classifier")
    assert deployment["metadata"]["annotations"]["shipyard.io/mlflow-run-id"] == "r1"


def test_every_manifest_passes_strict_schema_validation() -> None:
    for spec in (_spec(), _spec(canary_weight=20, previous_image=OLD)):
        for obj in manifests(spec).values():
            validate_manifest(obj)


def test_schema_validation_catches_a_broken_object() -> None:
    broken = manifests(_spec())["deployment.yaml"]
    broken["spec"]["replicas"] = "two"
    with pytest.raises(shipyard.DeployError, match="not valid Kubernetes"):
        validate_manifest(broken)
    broken = manifests(_spec())["service.yaml"]
    broken["spec"]["portz"] = []
    with pytest.raises(shipyard.DeployError, match="not valid Kubernetes"):
        validate_manifest(broken)


def test_canary_splits_traffic_by_replicas_behind_one_service() -> None:
    objects = manifests(_spec(canary_weight=20, previous_image=OLD, replicas=4))
    stable, canary = objects["deployment.yaml"], objects["canary-deployment.yaml"]
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == OLD
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"].endswith(DIGEST)
    assert canary["spec"]["replicas"] == 1 and canary["metadata"]["annotations"]["shipyard.io/canary-weight"] == "20"
    service_selector = objects["service.yaml"]["spec"]["selector"]
    for obj in (stable, canary):
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert all(labels[k] == v for k, v in service_selector.items())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image_digest": "latest"}, "not a sha256 digest"),
        ({"run_as_user": 0}, "runs as root"),
        ({"canary_weight": 100, "previous_image": OLD}, "between 1 and 99"),
        ({"canary_weight": 10}, "needs the previous image"),
    ],
)
def test_unsafe_or_wrong_input_is_refused(overrides, message) -> None:
    with pytest.raises(shipyard.DeployError, match=message):
        manifests(_spec(**overrides))


def test_written_bundle_has_everything_an_engineer_needs(tmp_path: Path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    bundle = write_bundle(_spec(), tmp_path / "iris" / "3")
    assert set(bundle.files) == {
        "README.md", "gate-report.json", "handoff.json", "sbom.cdx.json",
        *(f"base/{name}" for name in ("deployment.yaml", "service.yaml", "serviceaccount.yaml",
                                      "networkpolicy.yaml", "pdb.yaml", "kustomization.yaml")),
        "overlays/staging/kustomization.yaml", "overlays/production/kustomization.yaml",
        "alerts/prometheus-rule.yaml", "alerts/rules.yaml",
    }
    handoff = bundle.handoff
    assert handoff["image"]["digest"] == DIGEST
    assert handoff["gates"]["verdict"] == "pass"
    assert bundle.manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]["image"].endswith(DIGEST)
    sbom_text = (bundle.path / "sbom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom_text) is None
    components = {c["name"]: c for c in json.loads(sbom_text)["components"]}
    assert components["scikit-learn"]["purl"] == "pkg:pypi/scikit-learn@1.9.1"
    readme = (bundle.path / "README.md").read_text()
    assert "kubectl apply -k overlays/production" in readme
    assert f"kubectl rollout status deployment/{slug('Iris Classifier')} -n production" in readme
    assert "shipyard rollback 'Iris Classifier' --reason" in readme


def test_read_bundle_gives_back_the_spec_it_was_written_from(tmp_path: Path) -> None:
    for spec in (_spec(), _spec(canary_weight=25, previous_image=OLD, replicas=3, namespace="models")):
        bundle = write_bundle(spec, tmp_path / "b")
        again = read_bundle(bundle.path)
        assert again.lineage == spec.lineage and again.image == spec.image
        assert sorted(again.python_packages) == sorted(spec.python_packages)
        assert (again.replicas, again.namespace, again.canary_weight) == (spec.replicas, spec.namespace, spec.canary_weight)
        assert manifests(again) == manifests(spec)


def test_read_bundle_of_nothing_is_a_deploy_error(tmp_path: Path) -> None:
    with pytest.raises(shipyard.DeployError, match="no readable handoff bundle"):
        read_bundle(tmp_path)


def test_rewriting_a_bundle_replaces_it_whole(tmp_path: Path) -> None:
    target = tmp_path / "iris" / "3"
    write_bundle(_spec(canary_weight=25, previous_image=OLD), target)
    bundle = write_bundle(_spec(), target)
    assert "base/canary-deployment.yaml" not in bundle.files
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]


def test_a_failed_validation_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(shipyard.DeployError):
        write_bundle(_spec(image_digest="sha256:short"), tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_packages_from_lock() -> None:
    assert packages_from_lock(["# python 3.11", "numpy==2.4.6", "", "pandas == 3.1 # data"]) == (
        ("numpy", "2.4.6"),
        ("pandas", "3.1"),
    )
