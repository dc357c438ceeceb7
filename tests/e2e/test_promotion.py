"""One-call promotion end to end: real MLflow, BentoML, Docker daemon and a local OCI registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import shipyard
from shipyard._core import audit
from shipyard._core.workspace import reset_workspace
from shipyard.deploy import kustomize
from tests.conftest import free_port
from tests.docker_support import docker_cli, docker_engine, docker_inspect  # noqa: F401  (fixture)
from tests.registry_support import local_registry  # noqa: F401  (fixture)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

QUICKSTART_MODEL = "breast-cancer"


@pytest.fixture
def ws(quickstart, local_registry, docker_engine, monkeypatch):  # noqa: F811
    """The quickstart's workspace, pushing to the local registry."""
    project, _, _ = quickstart
    monkeypatch.setenv("SHIPYARD_PROJECT_DIR", str(project))
    reset_workspace()
    return shipyard.init(project_dir=project, oci_registry=local_registry.address)


def _aliases(ws, name: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    aliases = MlflowClient(tracking_uri=ws.tracking_uri, registry_uri=ws.registry_uri).get_registered_model(name).aliases
    return {alias: str(version) for alias, version in aliases.items()}


def candidate(ws, c: float = 1.0, *, gate: str = "accuracy >= 0.5", log_model: bool = True) -> str:
    """A tracked run with an iris model and a recorded gate verdict."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from shipyard.gates import threshold

    X, y = load_iris(return_X_y=True, as_frame=True)
    with shipyard.start_run("iris-e2e", workspace=ws) as run:
        model = LogisticRegression(C=c, max_iter=500).fit(X, y)
        shipyard.log_metric("accuracy", model.score(X, y))
        if log_model:
            shipyard.log_model(model, name="model", input_example=X.head(5))
    if log_model:
        shipyard.check(run.run_id, gates=[threshold(gate)], workspace=ws)
    return run.run_id


def test_quickstart_run_is_promoted_in_one_call(quickstart, ws, local_registry) -> None:  # noqa: F811
    import kubernetes_validate
    from mlflow.tracking import MlflowClient

    import mlflow

    from shipyard.tracking._mlflow import fluent_state, restore_fluent_state

    _, _, run_id = quickstart
    users_own = f"sqlite:///{ws.project_dir / 'my-own-experiments.db'}"
    before = fluent_state()
    mlflow.set_tracking_uri(users_own)
    mlflow.set_registry_uri(users_own)
    events = []
    try:
        promotion = shipyard.promote(run_id, model_name=QUICKSTART_MODEL, progress=events.append)
        # shipyard passes its URIs explicitly: the user's own MLflow calls still go where they said
        assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (users_own, users_own)
    finally:
        restore_fluent_state(before)
    assert promotion.status == "completed"
    assert [s.name for s in promotion.stages][-1] == "aliases"
    assert {e.state for e in events} == {"started", "done"}

    client = MlflowClient(tracking_uri=ws.tracking_uri, registry_uri=ws.registry_uri)
    assert str(client.get_model_version_by_alias(QUICKSTART_MODEL, "champion").version) == promotion.version

    handoff = json.loads((promotion.bundle_path / "handoff.json").read_text())
    digest = handoff["image"]["digest"]
    assert digest == promotion.image_digest and digest.startswith("sha256:")
    pushed = f"{local_registry.address}/shipyard/{QUICKSTART_MODEL}:v{promotion.version}"
    assert f"{local_registry.address}/shipyard/{QUICKSTART_MODEL}@{digest}" in docker_inspect(pushed, "{{json .RepoDigests}}")
    assert docker_inspect(pushed, "{{.Config.User}}") not in ("", "root", "0")

    kinds = set()
    for obj in kustomize.build(promotion.bundle_path / "overlays" / "production"):
        kinds.add(obj["kind"])
        kubernetes_validate.validate(obj, "1.30.0", strict=True)
        assert obj["metadata"]["namespace"] == "production"
        if obj["kind"] == "Deployment":
            assert obj["spec"]["template"]["spec"]["containers"][0]["image"].endswith("@" + digest)
    assert {"Deployment", "Service", "ServiceAccount", "NetworkPolicy", "PodDisruptionBudget"} <= kinds, kinds
    assert handoff["lineage"]["mlflow_run_id"] == run_id
    assert handoff["gates"]["verdict"] == "pass"
    sbom = json.loads((promotion.bundle_path / "sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX" and any(c["name"] == "scikit-learn" for c in sbom["components"])


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import shipyard
    run_id, model, kill_after, log = sys.argv[1:5]

    def progress(event):
        with open(log, "a") as fh:
            fh.write(f"{event.stage} {event.state}\\n")
        if event.stage == kill_after and event.state == "done":
            os.kill(os.getpid(), signal.SIGKILL)

    shipyard.promote(run_id, model_name=model, progress=progress)
    """
)


def test_sigkill_at_every_stage_boundary_leaves_aliases_and_resumes(ws, tmp_path: Path) -> None:
    from shipyard.promotion._promote import STAGES

    model = "iris-kill"
    first = shipyard.promote(candidate(ws, 1.0), model_name=model)
    before = _aliases(ws, model)
    assert before == {"champion": first.version}

    run_id = candidate(ws, 0.5)
    script, log = tmp_path / "killer.py", tmp_path / "events.log"
    script.write_text(KILLER)
    env = {**os.environ, "SHIPYARD_PROJECT_DIR": str(ws.project_dir), "SHIPYARD_OCI_REGISTRY": ws.settings.oci_registry}
    for stage in STAGES[:-1]:
        proc = subprocess.run([sys.executable, str(script), run_id, model, stage.name, str(log)],
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == -9, proc.stderr[-2000:]
        assert _aliases(ws, model).get("champion") == first.version, f"champion moved after a kill at {stage.name}"
        assert "previous" not in _aliases(ws, model)
    promotion = shipyard.promote(run_id, model_name=model)
    assert promotion.status == "completed"
    assert _aliases(ws, model) == {"champion": promotion.version, "previous": first.version}
    started = [line.split()[0] for line in log.read_text().splitlines() if line.endswith(" started")]
    assert started == [s.name for s in STAGES[:-1]], "a stage whose output was intact ran again"
    assert [s.reused for s in promotion.stages] == [True] * (len(STAGES) - 1) + [False]


def test_a_deleted_image_reruns_every_stage_after_it_and_the_bundle_pins_the_new_digest(ws, docker_engine) -> None:  # noqa: F811

    model = "iris-rebuild"
    run_id = candidate(ws, 1.0)
    first = shipyard.promote(run_id, model_name=model)
    old_image = json.loads((first.bundle_path / "handoff.json").read_text())["image"]["image_id"]
    docker_engine.images.remove(old_image, force=True)

    again = shipyard.promote(run_id, model_name=model)
    assert again.status == "completed"
    assert [s.name for s in again.stages if s.reused] == ["gates", "register", "bento"]
    assert [s.name for s in again.stages if not s.reused] == [
        "image", "smoke", "push", "approval", "bundle", "gitops", "aliases",
    ]
    assert again.image_digest != first.image_digest
    handoff = json.loads((again.bundle_path / "handoff.json").read_text())
    assert handoff["image"]["digest"] == again.image_digest and handoff["image"]["image_id"] != old_image
    deployment = yaml.safe_load((again.bundle_path / "base" / "deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith("@" + again.image_digest)
    smoke_of_new = [r for r in audit.read(workspace=ws, event="gate.attach") if r.get("model") == model]
    assert len(smoke_of_new) == 2  # the rebuilt image was smoke-tested, not trusted on the old verdict


def _promotion_containers(key: str) -> list[str]:
    """Containers (running or not) labelled as started by promotion ``key``, asked of Docker as a separate process."""
    out = subprocess.run(
        [docker_cli(), "ps", "--all", "--quiet", "--filter", f"label=shipyard.promotion={key}"],
        capture_output=True, text=True, check=True,
    )
    return out.stdout.split()


def test_sigkill_during_smoke_leaves_no_container_and_no_holder_after_resume(ws, tmp_path: Path) -> None:
    import signal
    import time

    from shipyard._core.workspace import slug

    model = "iris-smoke-kill"
    run_id = candidate(ws, 1.0)
    key = f"{slug(model)}/run-{run_id}"
    script, log = tmp_path / "promote.py", tmp_path / "events.log"
    script.write_text(KILLER)
    env = {**os.environ, "SHIPYARD_PROJECT_DIR": str(ws.project_dir), "SHIPYARD_OCI_REGISTRY": ws.settings.oci_registry}
    proc = subprocess.Popen([sys.executable, str(script), run_id, model, "never", str(log)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not _promotion_containers(key):
            assert proc.poll() is None, "the promotion ended before its smoke container started"
            assert time.monotonic() < deadline, "no smoke container appeared"
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert "smoke started" in log.read_text() and "smoke done" not in log.read_text()
    assert _promotion_containers(key), "the killed promotion left no container: the test proves nothing"
    assert list(ws.locks_dir.glob("*.holder")), "a killed holder cannot remove its note"

    promotion = shipyard.promote(run_id, model_name=model)
    assert promotion.status == "completed"
    assert _promotion_containers(key) == []
    assert list(ws.locks_dir.glob("*.holder")) == []


def test_two_promotions_at_once_end_with_one_champion(ws) -> None:
    model = "iris-race"
    run_id = candidate(ws, 0.8)
    env = {**os.environ, "SHIPYARD_PROJECT_DIR": str(ws.project_dir), "SHIPYARD_OCI_REGISTRY": ws.settings.oci_registry}
    cmd = [sys.executable, "-m", "shipyard.cli", "promote", run_id, "--model-name", model]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    assert _aliases(ws, model) == {"champion": "1"}
    moves = [r for r in audit.read(workspace=ws) if r.get("model") == model and r["event"].startswith("alias.")]
    champion_moves = [r for r in moves if r.get("alias") == "champion"]
    assert len(champion_moves) == 1 and champion_moves[0].get("version") == "1"
    completed = [r for r in audit.read(workspace=ws, event="promotion.completed") if r.get("model") == model]
    assert len(completed) == 2  # the second one waited, then found every stage done


def test_approval_required_stops_before_the_swap_until_two_other_people_approve(ws, monkeypatch) -> None:
    """The four-eyes rule with two approvals: neither the run's author nor the promoter may approve; one is not
    enough; the same person twice counts once; a rejection stops the promotion."""
    identity = "SHIPYARD_TEST_IDENTITY"  # the suite's own prefix: no unknown-variable warning
    reset_workspace()
    ws = shipyard.init(project_dir=ws.project_dir, oci_registry=ws.settings.oci_registry, author="ada",
                       separation_of_duties=True, required_approvals=2, identity_source="env",
                       identity_env=identity)
    model = "iris-approval"
    run_id = candidate(ws, 1.0)
    monkeypatch.setenv(identity, "bob")
    waiting = shipyard.promote(run_id, model_name=model)
    assert waiting.status == "awaiting_approval" and waiting.bundle_path is None
    assert "champion" not in _aliases(ws, model)
    ref = f"{model}/{waiting.version}"
    pending = shipyard.review(ref)
    assert pending.image["digest"].startswith("sha256:") and pending.review.get("state") != "approved"
    for barred, rule in (("ada", "author"), ("bob", "promoter")):
        monkeypatch.setenv(identity, barred)
        with pytest.raises(shipyard.ApprovalRefused) as refused:
            shipyard.approve(ref, "looks fine to me")
        assert (refused.value.rule, refused.value.who) == (rule, barred)
    monkeypatch.setenv(identity, "eng-1")
    assert shipyard.approve(ref, "parity and latency look right")["approvals"] == "1/2"
    assert shipyard.approve(ref, "and again")["approvals"] == "1/2"  # the same person counts once
    monkeypatch.setenv(identity, "bob")
    assert shipyard.promote(run_id, model_name=model).status == "awaiting_approval"
    assert "champion" not in _aliases(ws, model)
    monkeypatch.setenv(identity, "eng-2")
    assert shipyard.approve(ref, "agreed")["state"] == "approved"
    monkeypatch.setenv(identity, "bob")
    done = shipyard.promote(run_id, model_name=model)
    assert done.status == "completed" and _aliases(ws, model)["champion"] == waiting.version
    approvals = json.loads((done.bundle_path / "handoff.json").read_text())["approvals"]
    assert [(a["by"], a["identity_source"]) for a in approvals] == [("eng-1", "env"), ("eng-2", "env")]
    refused = [r["who"] for r in audit.read(workspace=ws, event="review.refused") if r.get("model") == model]
    assert refused == ["ada", "bob"]

    rejected_run = candidate(ws, 0.3)
    second = shipyard.promote(rejected_run, model_name=model)
    shipyard.reject(f"{model}/{second.version}", "needs a fairness check on segment B", reviewer="eng-2")
    with pytest.raises(shipyard.PromotionError, match="rejected by eng-2: needs a fairness check on segment B"):
        shipyard.promote(rejected_run, model_name=model)
    assert _aliases(ws, model)["champion"] == waiting.version


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_rollback_restores_the_first_champion_and_its_bundle(ws, tmp_path: Path) -> None:
    """An Argo Rollouts canary in a GitOps repository: one commit per promotion and per rollback."""
    repo = tmp_path / "gitops"
    repo.mkdir()
    for args in (("init", "-q"), ("config", "user.name", "ci"), ("config", "user.email", "ci@example.invalid"),
                 ("commit", "-q", "--allow-empty", "-m", "start")):
        _git(repo, *args)
    ws = shipyard.init(project_dir=ws.project_dir, oci_registry=ws.settings.oci_registry, gitops_repo=repo,
                       gitops_url="https://git.example.invalid/platform/deploy.git", delivery="argo-canary")
    model = "iris-rollback"
    deployed = f"deploy/{model}/base/deployment.yaml"
    first = shipyard.promote(candidate(ws, 1.0), model_name=model)
    assert first.image_digest in _git(repo, "show", f"HEAD:{deployed}")
    commits = int(_git(repo, "rev-list", "--count", "HEAD"))
    second = shipyard.promote(candidate(ws, 0.4), model_name=model)
    assert first.image_digest != second.image_digest
    assert second.image_digest in _git(repo, "show", f"HEAD:{deployed}")
    assert int(_git(repo, "rev-list", "--count", "HEAD")) == commits + 1  # the whole layout in one commit
    assert _git(repo, "status", "--porcelain") == ""
    rendered = kustomize.build(repo / "deploy" / model / "overlays" / "production")
    by_kind = {obj["kind"]: obj for obj in rendered}
    assert {"Rollout", "AnalysisTemplate", "Deployment", "Service"} <= set(by_kind), sorted(by_kind)
    assert by_kind["Rollout"]["spec"]["workloadRef"]["name"] == by_kind["Deployment"]["metadata"]["name"]
    container = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].endswith("@" + second.image_digest)
    application = yaml.safe_load((repo / "deploy" / model / "argocd" / "production.yaml").read_text())
    assert application["spec"]["source"]["path"] == f"deploy/{model}/overlays/production"

    env = {**os.environ, "SHIPYARD_PROJECT_DIR": str(ws.project_dir), "COLUMNS": "250"}
    review = subprocess.run([sys.executable, "-m", "shipyard.cli", "review", f"{model}/{first.version}"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert review.returncode == 0, review.stderr
    for text in (first.image_digest, f"diff against champion v{second.version}", "lineage", "source_sha256",
                 "size_bytes", "requirements"):
        assert text in review.stdout, text

    from shipyard.deploy import handoff as handoff_module

    def broken_write(spec, directory):
        raise OSError("disk full")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(handoff_module, "write_bundle", broken_write)
        with pytest.raises(OSError, match="disk full"):
            shipyard.rollback(model, reason="latency regression in production")
    assert _aliases(ws, model) == {"champion": second.version, "previous": first.version}  # nothing moved
    assert second.image_digest in _git(repo, "show", f"HEAD:{deployed}")

    swap = shipyard.rollback(model, reason="latency regression in production")
    assert swap.champion.version == first.version
    assert _aliases(ws, model) == {"champion": first.version, "previous": second.version}
    current = ws.bundles_dir / model / "current"
    assert current.resolve() == first.bundle_path.resolve()
    handoff = json.loads((current / "handoff.json").read_text())
    assert handoff["image"]["digest"] == first.image_digest
    deployment = (current / "base" / "deployment.yaml").read_text()
    assert first.image_digest in deployment and second.image_digest not in deployment
    assert first.image_digest in _git(repo, "show", f"HEAD:{deployed}")
    assert "roll back to v1" in _git(repo, "log", "-1", "--format=%s")
    assert int(_git(repo, "rev-list", "--count", "HEAD")) == commits + 2  # the rollback is one commit
    pinned = yaml.safe_load(_git(repo, "show", f"HEAD:deploy/{model}/base/kustomization.yaml"))["images"][0]
    assert pinned["digest"] == first.image_digest
    assert any(r["event"] == "model.rollback" and r["model"] == model for r in audit.read(workspace=ws))


def test_bad_input_is_refused_and_aliases_stay(ws, monkeypatch) -> None:
    model = "iris-bad"
    first = shipyard.promote(candidate(ws, 1.0), model_name=model)
    expected = {"champion": first.version}

    with pytest.raises(shipyard.PromotionError, match="no model logged"):
        shipyard.promote(candidate(ws, log_model=False), model_name=model)
    assert _aliases(ws, model) == expected

    with pytest.raises(shipyard.GateFailed, match="accuracy"):
        shipyard.promote(candidate(ws, 1.0, gate="accuracy >= 0.9999"), model_name=model)
    assert _aliases(ws, model) == expected

    retired = shipyard.promote(candidate(ws, 0.9), model_name=model)
    shipyard.retire(f"{model}/{retired.version}", reason="trained on a leaked label")
    assert "champion" not in _aliases(ws, model)
    from shipyard import registry  # retiring removed every alias of that version; put champion back

    registry.set_alias(model, "champion", first.version, reason="restore after retiring", workspace=ws)
    with pytest.raises(shipyard.PromotionError, match="is retired"):
        shipyard.promote(f"{model}/{retired.version}")
    assert _aliases(ws, model)["champion"] == first.version

    monkeypatch.setenv("SHIPYARD_OCI_REGISTRY", f"127.0.0.1:{free_port()}")
    reset_workspace()
    unreachable = shipyard.init(project_dir=ws.project_dir)
    with pytest.raises(shipyard.DeployError, match="is running and reachable"):
        shipyard.promote(candidate(unreachable, 0.7), model_name=model)
    assert _aliases(unreachable, model)["champion"] == first.version
