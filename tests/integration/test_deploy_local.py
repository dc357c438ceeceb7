"""``shipyard deploy local``: a promoted bundle's production Deployment run by real podman (``podman kube play``),
its image pulled by digest from a real local OCI registry, answered through the Service's published port."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import shipyard
from shipyard import DeployError
from shipyard.deploy import local, parity
from tests.docker_support import REQUIRE_ENV, base_image, docker_engine  # noqa: F401  (fixtures)
from tests.monitoring_support import project_env
from tests.registry_support import local_registry  # noqa: F401  (fixture)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MODEL = "iris-local"


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], check=False, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def podman_ready(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """podman on PATH; on a machine whose root may not raise resource limits (no CAP_SYS_RESOURCE, as in a
    container), podman's default limits for containers cannot be set, so limits this machine allows are given."""
    if shutil.which("podman") is None:
        reason = "podman is not installed (apt-get install podman catatonit)"
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    configured = Path("/etc/containers/containers.conf")
    nofile, nproc = resource.getrlimit(resource.RLIMIT_NOFILE)[1], resource.getrlimit(resource.RLIMIT_NPROC)[1]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    low = nofile < 1048576 or nproc < 1048576
    if low and "CONTAINERS_CONF" not in os.environ and "default_ulimits" not in (
        configured.read_text() if configured.is_file() else ""
    ):
        conf = tmp_path_factory.mktemp("podman") / "containers.conf"
        n = min(nproc, pid_max)
        conf.write_text(f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={n}:{n}"]\n')
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("CONTAINERS_CONF", str(conf))
            yield
    else:
        yield


@pytest.fixture(scope="module")
def promoted(podman_ready, local_registry, docker_engine, base_image, tmp_path_factory) -> Iterator[dict[str, Any]]:  # noqa: F811
    """One iris model promoted with its image pushed to the local registry."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from shipyard.gates import threshold

    project = tmp_path_factory.mktemp("deploy-local") / "project"
    project.mkdir()
    with project_env(project):
        ws = shipyard.init(project_dir=project, oci_registry=local_registry.address)
        X, y = load_iris(return_X_y=True, as_frame=True)
        with shipyard.start_run("iris-local", workspace=ws) as run:
            model = LogisticRegression(max_iter=500).fit(X, y)
            shipyard.log_metric("accuracy", model.score(X, y))
            shipyard.log_model(model, name="model", input_example=X.head(5))
        shipyard.check(run.run_id, gates=[threshold("accuracy >= 0.5")], workspace=ws)
        promotion = shipyard.promote(run.run_id, model_name=MODEL, reason="deploy local tests")
    assert promotion.status == "completed", promotion
    assert "@sha256:" in promotion.image
    yield {"ws": ws, "promotion": promotion, "model": model, "rows": X}
    local.stop(ws, MODEL)
    podman("rmi", "--force", "--ignore", promotion.image)


def _inspect(container: str, template: str) -> str:
    return podman("container", "inspect", "--format", template, container).stdout.strip()


def _exec(container: str, script: str) -> subprocess.CompletedProcess[str]:
    return podman("exec", container, "sh", "-c", script)


def _post(url: str, token: str | None = None):
    def post(rows: list[Any]) -> list[Any]:
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        request = urllib.request.Request(f"{url}/predict", data=json.dumps({"inputs": rows}).encode(),
                                         headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["predictions"]

    return post


def test_the_production_deployment_runs_pulled_by_digest_locked_down_and_answers_as_the_model(promoted) -> None:
    ws, promotion = promoted["ws"], promoted["promotion"]
    # podman has its own image store; without the image there it must pull repo@sha256 from the registry
    podman("rmi", "--force", "--ignore", promotion.image)
    assert podman("image", "exists", promotion.image).returncode != 0
    running, notes = local.deploy(ws, promotion.bundle_path)
    try:
        assert running.image == promotion.image and running.image.endswith("@" + promotion.image_digest)
        assert podman("image", "exists", promotion.image).returncode == 0
        assert _inspect(running.container_id, "{{.ImageName}}") == promotion.image
        assert any("1 replica" in n for n in notes), notes
        assert local.running(ws, MODEL) == running

        uid = json.loads((promotion.bundle_path / "handoff.json").read_text())["deployment"]["run_as_user"]
        identity = _exec(running.container_id, "id -u; id -g")
        assert identity.stdout.split() == [str(uid), str(uid)] and uid != 0
        write = _exec(running.container_id, "touch /opt/probe")
        assert write.returncode != 0 and "Read-only file system" in write.stderr
        assert _exec(running.container_id, "touch /tmp/probe").returncode == 0  # the emptyDir the server writes
        status = _exec(running.container_id, "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/1/status").stdout
        assert {tuple(line.split()) for line in status.splitlines()} == {
            ("CapEff:", "0000000000000000"), ("CapBnd:", "0000000000000000"), ("NoNewPrivs:", "1"), ("Seccomp:", "2")
        }
        published = podman("port", running.container_id).stdout.split()
        assert published[-1] == f"127.0.0.1:{running.port}", published

        result = parity.compare(promoted["model"], [promoted["rows"]], _post(running.url))
        assert result.rows == len(promoted["rows"]) and result.mismatches == 0, result.first_mismatch

        # the same bundle again: the new pod is ready before the old one goes, on the port rollback keeps
        again = local.replay(ws, MODEL, promotion.bundle_path)
        assert again is not None and again.port == running.port and again.container_id != running.container_id
        assert _inspect(running.container_id, "{{.State.Status}}") == ""  # removed
        assert _post(again.url)(parity.records(promoted["rows"].head(3))) == [0, 0, 0]
    finally:
        stopped = local.stop(ws, MODEL)
    assert stopped is not None and local.recorded(ws, MODEL) is None
    assert podman("pod", "exists", f"{stopped.name}-pod-0").returncode != 0
    assert not [v for v in stopped.volumes if podman("volume", "exists", v).returncode == 0]


def test_the_cli_deploys_the_champion_shows_it_and_stops_it(promoted, monkeypatch) -> None:
    from click.testing import CliRunner

    from shipyard.cli.deploy import deploy

    ws, promotion = promoted["ws"], promoted["promotion"]
    monkeypatch.setenv("SHIPYARD_PROJECT_DIR", str(ws.project_dir))
    runner = CliRunner()
    try:
        out = runner.invoke(deploy, ["local", MODEL], catch_exceptions=False)
        assert out.exit_code == 0, out.output
        running = local.running(ws, MODEL)
        assert running is not None and running.bundle == str(promotion.bundle_path)
        assert f"ready at {running.url}" in out.output and promotion.image in out.output
        shown = runner.invoke(deploy, ["status", MODEL], catch_exceptions=False)
        assert f"v{promotion.version}: running at {running.url}" in shown.output
    finally:
        stopped = runner.invoke(deploy, ["stop", MODEL], catch_exceptions=False)
    assert "stopped" in stopped.output
    assert "not deployed locally" in runner.invoke(deploy, ["status", MODEL]).output


def _broken_copy(bundle: Path, into: Path) -> Path:
    """``bundle`` with a server that exits at start."""
    import yaml

    shutil.copytree(bundle, into)
    path = next(p for p in (into / "base" / "deployment.yaml", into / "k8s" / "deployment.yaml") if p.is_file())
    deployment = yaml.safe_load(path.read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["command"] = ["sh", "-c", "echo model failed; exit 3"]
    path.write_text(yaml.safe_dump(deployment))
    return into


def test_a_new_version_that_never_gets_ready_leaves_the_old_one_serving(promoted, tmp_path: Path) -> None:
    ws, promotion = promoted["ws"], promoted["promotion"]
    broken = _broken_copy(promotion.bundle_path, tmp_path / "broken")
    good, _ = local.deploy(ws, promotion.bundle_path)
    try:
        for port in (None, good.port):  # beside the old pod, and in its place (rollback keeps the port)
            with pytest.raises(DeployError, match="before it was ready") as info:
                local.deploy(ws, broken, port=port, ready_timeout=60)
            assert "model failed" in str(info.value)
            now = local.running(ws, MODEL)
            assert now is not None and now.port == good.port and now.bundle == str(promotion.bundle_path)
            assert _post(now.url)(parity.records(promoted["rows"].head(2))) == [0, 0]
        assert len(list((ws.root / "deploy-local").rglob("*.yaml"))) == 1  # only the running pod's manifest
    finally:
        local.stop(ws, MODEL)


def test_a_field_podman_would_not_honour_is_refused_before_anything_starts(promoted, tmp_path: Path) -> None:
    import yaml

    ws, promotion = promoted["ws"], promoted["promotion"]
    bundle = tmp_path / "bundle"
    shutil.copytree(promotion.bundle_path, bundle)
    path = next(p for p in (bundle / "base" / "deployment.yaml", bundle / "k8s" / "deployment.yaml") if p.is_file())
    deployment = yaml.safe_load(path.read_text())
    pod = deployment["spec"]["template"]["spec"]
    pod.setdefault("volumes", []).append({"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}})
    pod["initContainers"] = [{"name": "migrate", "image": promotion.image}]
    path.write_text(yaml.safe_dump(deployment))
    with pytest.raises(DeployError) as info:
        local.deploy(ws, bundle)
    assert "hostPath" in str(info.value) and "initContainers" in str(info.value)
    assert local.recorded(ws, MODEL) is None


def test_a_bundle_with_serving_auth_runs_here_with_a_token_made_for_it(promoted, tmp_path: Path) -> None:
    """The Deployment that mounts the serving-token Secret runs here with a local token folder in its place."""
    import dataclasses
    import urllib.error

    from shipyard.deploy import handoff

    ws, promotion = promoted["ws"], promoted["promotion"]
    spec = handoff.read_bundle(promotion.bundle_path)
    spec = dataclasses.replace(spec, auth_secret=handoff.token_secret_name(MODEL))
    bundle = handoff.write_bundle(spec, tmp_path / "bundle").path
    running, notes = local.deploy(ws, bundle)
    try:
        assert any("serving token" in n for n in notes), notes
        token = Path(running.token_file).read_text().strip()
        assert token and token not in (bundle / "handoff.json").read_text()
        rows = parity.records(promoted["rows"].head(3))
        with pytest.raises(urllib.error.HTTPError) as refused:
            _post(running.url)(rows)
        assert refused.value.code == 401
        assert _post(running.url, token)(rows) == [0, 0, 0]
        with urllib.request.urlopen(f"{running.url}{running.ready_path}", timeout=10) as probe:
            assert probe.status == 200  # the probes stay open
    finally:
        local.stop(ws, MODEL)


def test_rollback_plays_the_previous_version_where_the_model_runs(promoted) -> None:
    """`shipyard rollback` moves the aliases and the model served here follows, on the same port."""
    from sklearn.linear_model import LogisticRegression

    from shipyard.gates import threshold

    ws, first, X = promoted["ws"], promoted["promotion"], promoted["rows"]
    y = promoted["model"].predict(X)
    with project_env(ws.project_dir):
        with shipyard.start_run("iris-local", workspace=ws) as run:
            model = LogisticRegression(max_iter=500, C=0.05).fit(X, y)
            shipyard.log_metric("accuracy", model.score(X, y))
            shipyard.log_model(model, name="model", input_example=X.head(5))
        shipyard.check(run.run_id, gates=[threshold("accuracy >= 0.5")], workspace=ws)
        second = shipyard.promote(run.run_id, model_name=MODEL, reason="second version", workspace=ws)
    assert second.status == "completed" and second.version != first.version, second
    serving, _ = local.deploy(ws, second.bundle_path)
    try:
        swap = shipyard.rollback(MODEL, reason="p99 regression on v2", workspace=ws)
        assert swap.champion.version == first.version
        now = local.running(ws, MODEL)
        assert now is not None and (now.version, now.image, now.port) == (first.version, first.image, serving.port)
        with urllib.request.urlopen(f"{now.url}/metadata", data=b"{}", timeout=30) as response:
            assert json.load(response)["model"]["version"] == first.version
        assert _inspect(serving.container_id, "{{.State.Status}}") == ""  # the second version's pod is gone
    finally:
        local.stop(ws, MODEL)
        podman("rmi", "--force", "--ignore", second.image)
