"""What a local run makes of a bundle's Deployment and Service (no podman, no Docker)."""

from __future__ import annotations

import copy

import pytest

from shipyard import DeployError
from shipyard.deploy import local
from shipyard.deploy.handoff import HandoffSpec, manifests

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def objects():
    spec = HandoffSpec(model_name="iris", version="3", image_repository="127.0.0.1:5000/shipyard/iris",
                       image_digest=DIGEST, run_as_user=10001)
    return manifests(spec)


def _pod(deployment):
    return deployment["spec"]["template"]["spec"]


def test_the_generated_deployment_runs_as_written_but_for_replicas_port_names_and_liveness(objects) -> None:
    deployment, service = objects["deployment.yaml"], objects["service.yaml"]
    before = copy.deepcopy(deployment)
    out = local.local_manifest(deployment, service, host_port=8123, token="a1b2c3")
    assert deployment == before  # the bundle's objects are not changed in place
    assert out.name == "iris-v3-a1b2c3" and out.deployment["metadata"]["name"] == out.name
    assert out.deployment["spec"]["replicas"] == 1 and any("1 replica" in n for n in out.notes)
    assert out.image == f"127.0.0.1:5000/shipyard/iris@{DIGEST}"
    assert out.ready_path == "/readyz" and out.port == 8123
    container = _pod(out.deployment)["containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP", "hostPort": 8123,
                                   "hostIP": "127.0.0.1"}]
    assert "livenessProbe" not in container and "readinessProbe" not in container
    # what protects the pod is kept exactly
    assert container["securityContext"] == _pod(before)["containers"][0]["securityContext"]
    assert _pod(out.deployment)["securityContext"] == _pod(before)["securityContext"]
    assert container["resources"] == _pod(before)["containers"][0]["resources"]
    # podman keeps volumes by name: each deployment gets its own
    assert out.volumes == tuple(f"{out.name}-{v['name']}" for v in _pod(before)["volumes"])
    assert {m["name"] for m in container["volumeMounts"]} == set(out.volumes)
    assert [m["mountPath"] for m in container["volumeMounts"]] == [
        m["mountPath"] for m in _pod(before)["containers"][0]["volumeMounts"]
    ]


def test_every_unsupported_field_is_named_in_one_error(objects) -> None:
    deployment = copy.deepcopy(objects["deployment.yaml"])
    pod = _pod(deployment)
    pod["initContainers"] = [{"name": "init", "image": "busybox"}]
    pod["hostNetwork"] = True
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/var/run"}})
    pod["containers"].append({"name": "sidecar", "image": "envoy"})
    model = pod["containers"][0]
    model["env"] = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    model["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]
    model["securityContext"]["privileged"] = True
    with pytest.raises(DeployError) as info:
        local.local_manifest(deployment, objects["service.yaml"], host_port=8123, token="x")
    message = str(info.value)
    for field in ("spec.template.spec.initContainers", "spec.template.spec.hostNetwork", "hostPath",
                  "exactly one container is supported, found 2", "env[0] (TOKEN: only literal values)",
                  "capabilities.add", "securityContext.privileged"):
        assert field in message, field
    assert info.value.hint and "kubectl apply -k overlays/production" in info.value.hint


def test_the_service_port_must_reach_the_container_and_the_probe_must_use_it(objects) -> None:
    deployment, service = objects["deployment.yaml"], copy.deepcopy(objects["service.yaml"])
    service["spec"]["ports"][0]["targetPort"] = "metrics"
    with pytest.raises(DeployError, match="'metrics' is not a port of container model"):
        local.local_manifest(deployment, service, host_port=8123, token="x")
    deployment = copy.deepcopy(deployment)
    _pod(deployment)["containers"][0]["readinessProbe"]["httpGet"]["port"] = 9090
    with pytest.raises(DeployError, match="readiness probe checks port 9090"):
        local.local_manifest(deployment, objects["service.yaml"], host_port=8123, token="x")


def test_select_runs_the_deployment_a_rollout_refers_to(objects) -> None:
    rollout = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "iris"},
               "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris"}}}
    preview = copy.deepcopy(objects["service.yaml"])
    preview["metadata"]["name"] = "iris-preview"
    deployment, service = local.select([preview, rollout, *objects.values()])
    assert deployment["metadata"]["name"] == "iris" and service["metadata"]["name"] == "iris"


def test_select_refuses_a_bundle_without_a_deployment_or_a_service(objects) -> None:
    with pytest.raises(DeployError, match="Cannot tell which Deployment"):
        local.select([objects["service.yaml"]])
    with pytest.raises(DeployError, match="No Service selects"):
        local.select([objects["deployment.yaml"]])


def test_played_ids_are_read_from_podman_output() -> None:
    pod, container = "a" * 64, "b" * 64
    assert local._played_ids(f"Pod:\n{pod}\nContainer:\n{container}\n\n") == (pod, container)
    assert local._played_ids("Error: something\n") == ("", "")


def test_an_rlimit_failure_says_which_limits_to_configure(tmp_path) -> None:
    error = local._play_error(tmp_path / "x.yaml", "error setting rlimit type 6: operation not permitted")
    assert "default_ulimits" in error.hint and "nofile=" in error.hint and "nproc=" in error.hint


def test_select_runs_a_flagger_bundle_behind_the_service_flagger_would_make(tmp_path) -> None:
    from dataclasses import replace

    from shipyard.deploy import kustomize
    from shipyard.deploy.delivery import DeliverySpec
    from shipyard.deploy.handoff import write_bundle

    spec = HandoffSpec(model_name="iris", version="3", image_repository="127.0.0.1:5000/shipyard/iris",
                       image_digest=DIGEST, run_as_user=10001)
    bundle = write_bundle(replace(spec, delivery=DeliverySpec(mode="flagger")), tmp_path / "b")
    rendered = kustomize.build(bundle.path / "overlays" / "production")
    assert "Service" not in {o["kind"] for o in rendered}
    deployment, service = local.select(rendered)
    assert deployment["metadata"]["name"] == "iris"
    out = local.local_manifest(deployment, service, host_port=8124, token="f1")
    assert _pod(out.deployment)["containers"][0]["ports"][0]["containerPort"] == 3000
