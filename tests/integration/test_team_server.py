"""shipyard against a team's servers: an ``mlflow server`` on PostgreSQL with its artifacts in an S3-compatible
store (tests/team_support.py), and object storage written to directly with ``artifact_root``.

The path test changes nothing but ``SHIPYARD_TRACKING_URI``: the real Metaflow runtime trains and gates the
retraining flow's model, ``shipyard.promote`` registers, packages (bento and image) and smoke-tests it and
moves champion, and the test then reads the bucket and the database themselves, not through shipyard.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import shipyard
import shipyard.tracking
from shipyard._core import lineage
from shipyard._core.workspace import reset_workspace
from tests.docker_support import base_image, docker_engine  # noqa: F401  (fixtures)
from tests.monitoring_support import FLOW, project_env
from tests.team_support import postgres, s3_store, team_server  # noqa: F401  (fixtures)

TEAM_BUCKET = "team-artifacts"  # the bucket and prefix team_server keeps its artifacts under
TEAM_PREFIX = "mlflow/"
MODEL = "team-retrain"


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _objects(s3, bucket: str, prefix: str) -> dict[str, int]:
    """Every object under ``prefix`` in ``bucket`` with its size, listed by the S3 API itself."""
    found: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.update((item["Key"], item["Size"]) for item in page.get("Contents", []))
    return found


def _fetch_prefix(s3, bucket: str, prefix: str, into: Path) -> Path:
    """The objects under ``prefix`` as files under ``into`` (their keys' tails as relative paths)."""
    for key in _objects(s3, bucket, prefix):
        target = into / key[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
    return into


@pytest.mark.docker
def test_flow_gates_registry_and_promotion_run_on_the_team_server(
    team_server, s3_store, postgres, base_image, tmp_path  # noqa: F811
) -> None:
    import psycopg

    from shipyard.monitoring.integrity import directory_sha256

    project = tmp_path / "project"
    project.mkdir()
    with project_env(project), pytest.MonkeyPatch.context() as mp:
        # the only change from a laptop: where tracking is; the client needs no S3 credentials (proxied)
        mp.setenv("SHIPYARD_TRACKING_URI", team_server.uri)
        for name in s3_store.env:
            mp.delenv(name, raising=False)
        reset_workspace()
        ws = shipyard.init(project_dir=project)
        assert not ws.embedded and ws.tracking_uri == team_server.uri
        result = shipyard.run(str(FLOW))
        assert result.status == "FINISHED"
        assert result.tags[lineage.GATE_VERDICT] == "pass", result.tags
        promotion = shipyard.promote(result, model_name=MODEL, reason="team server path")
    assert promotion.status == "completed", promotion
    assert [s.name for s in promotion.stages if s.name in ("register", "bento", "image", "smoke", "aliases")] == [
        "register", "bento", "image", "smoke", "aliases",
    ]
    client = _client(team_server.uri)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == promotion.version and champion.run_id == result.mlflow_run_id
    recorded = champion.tags[lineage.LABEL_MODEL_SHA256]
    assert recorded == client.get_run(result.mlflow_run_id).data.tags[lineage.model_tag("model", "sha256")]
    assert not (project / ".shipyard" / "mlflow.db").exists(), "something fell back to the embedded store"
    assert not any((project / ".shipyard" / "artifacts").rglob("MLmodel")), "model files were kept locally"

    # the bucket holds the model's files, and they hash to the digest the version recorded
    s3 = s3_store.client()
    location = client.get_model_version_download_uri(MODEL, champion.version)
    assert location.startswith("mlflow-artifacts:/"), location  # proxied: the server owns the bucket
    prefix = TEAM_PREFIX + location.removeprefix("mlflow-artifacts:/").strip("/") + "/"
    stored = _objects(s3, TEAM_BUCKET, prefix)
    assert prefix + "MLmodel" in stored and prefix + "requirements.txt" in stored, sorted(stored)
    assert directory_sha256(_fetch_prefix(s3, TEAM_BUCKET, prefix, tmp_path / "from-s3")) == recorded
    run_artifacts = _objects(s3, TEAM_BUCKET, TEAM_PREFIX)
    gate_report = f"/{result.mlflow_run_id}/artifacts/shipyard/gates/report.json"
    assert any(key.endswith(gate_report) for key in run_artifacts), "the gate report is not in the bucket"

    # shipyard's own download (and its digest) from there
    with project_env(project), pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHIPYARD_TRACKING_URI", team_server.uri)
        reset_workspace()
        ws = shipyard.init(project_dir=project)
        local = shipyard.tracking.download_model(f"models:/{MODEL}@champion", tmp_path / "download", workspace=ws)
    assert directory_sha256(local) == recorded

    # PostgreSQL holds the runs, the metrics, the version and its alias
    with psycopg.connect(postgres.url("mlflow")) as conn:
        status = conn.execute("SELECT status FROM runs WHERE run_uuid = %s", (result.mlflow_run_id,)).fetchone()
        metrics = conn.execute(
            "SELECT key FROM latest_metrics WHERE run_uuid = %s", (result.mlflow_run_id,)
        ).fetchall()
        alias = conn.execute(
            "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = 'champion'", (MODEL,)
        ).fetchone()
        sha_tag = conn.execute(
            "SELECT value FROM model_version_tags WHERE name = %s AND version = %s AND key = %s",
            (MODEL, int(promotion.version), lineage.LABEL_MODEL_SHA256),
        ).fetchone()
    assert status == ("FINISHED",)
    assert "train_accuracy" in {key for (key,) in metrics}
    assert alias == (int(promotion.version),)
    assert sha_tag == (recorded,)


LOGGER = textwrap.dedent(
    """
    import sys
    import shipyard
    from shipyard.tracking import attach, detach

    run_id, worker, points = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if run_id == "own":
        with shipyard.start_run("concurrent-logging", run_name=f"worker-{worker}") as run:
            print(run.run_id, flush=True)
            for i in range(points):
                shipyard.log_metric("loss", 1.0 / (i + 1))  # steps 0..points-1 by default
    else:
        run = attach(shipyard.init(), run_id)
        try:
            for i in range(points):
                shipyard.log_metric("shared", float(worker), step=worker * points + i)
                shipyard.log_metric(f"worker_{worker}", float(i))
        finally:
            result = run.close()
            detach(run)
        print(run_id, result, flush=True)
    """
)


def test_four_processes_logging_at_once_lose_and_duplicate_nothing(team_server, tmp_path) -> None:  # noqa: F811
    """Two processes share one run (disjoint steps of one metric, one metric each), two log to runs of their own."""
    from shipyard.tracking import create_run, finish_run

    points = 5000
    project = tmp_path / "project"
    project.mkdir()
    with project_env(project), pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHIPYARD_TRACKING_URI", team_server.uri)
        reset_workspace()
        ws = shipyard.init(project_dir=project)
        shared = create_run(ws, "concurrent-logging", run_name="shared", tags={})
        script = tmp_path / "logger.py"
        script.write_text(LOGGER)
        env = {**os.environ, "SHIPYARD_PROJECT_DIR": str(project), "SHIPYARD_TRACKING_URI": team_server.uri}
        targets = [shared, shared, "own", "own"]
        procs = [
            subprocess.Popen([sys.executable, str(script), target, str(worker), str(points)], env=env, cwd=project,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for worker, target in enumerate(targets)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, [err[-2000:] for _, err in outs]
        finish_run(ws, shared, "FINISHED")
        assert not list(ws.spool_dir.rglob("*.jsonl")), "points were spooled instead of sent"
    client = _client(team_server.uri)
    history = client.get_metric_history(shared, "shared")
    assert len(history) == 2 * points
    assert sorted(m.step for m in history) == list(range(2 * points))
    for worker in (0, 1):
        own_steps = [m.step for m in history if m.value == float(worker)]
        assert own_steps and sorted(own_steps) == list(range(worker * points, (worker + 1) * points))
        mine = client.get_metric_history(shared, f"worker_{worker}")
        assert sorted((m.step, m.value) for m in mine) == [(i, float(i)) for i in range(points)]
    own_runs = [out.split()[0] for out, _ in outs[2:]]
    assert len(set(own_runs)) == 2
    for run_id in own_runs:
        loss = client.get_metric_history(run_id, "loss")
        assert sorted(m.step for m in loss) == list(range(points))
        assert client.get_run(run_id).info.status == "FINISHED"


def _s3_env(monkeypatch: pytest.MonkeyPatch, s3_store, **changes: str | None) -> None:  # noqa: F811
    """The S3 store's client environment, with ``changes`` (None: unset) on top."""
    for name, value in {**s3_store.env, "AWS_EC2_METADATA_DISABLED": "true", **changes}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def test_embedded_store_with_artifact_root_in_s3_logs_gates_and_packages(
    s3_store, project, monkeypatch, tmp_path  # noqa: F811
) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from shipyard import registry
    from shipyard._core.workspace import slug
    from shipyard.gates import threshold
    from shipyard.monitoring.integrity import directory_sha256

    bucket, experiment, model_name = "shipyard-direct", "iris in s3", "iris-direct"
    s3_store.create_bucket(bucket)
    _s3_env(monkeypatch, s3_store)
    monkeypatch.setenv("SHIPYARD_ARTIFACT_ROOT", f"s3://{bucket}/team-a/")
    ws = shipyard.init(project_dir=project)
    assert ws.embedded and ws.tracking_uri.startswith("sqlite:")

    X, y = load_iris(return_X_y=True, as_frame=True)
    with shipyard.start_run(experiment, workspace=ws) as run:
        model = LogisticRegression(max_iter=500).fit(X, y)
        shipyard.log_metric("accuracy", model.score(X, y))
        shipyard.log_dataset(X.assign(target=y), name="train")
        logged = shipyard.log_model(model, name="model", input_example=X.head(5))
    report = shipyard.check(run.run_id, gates=[threshold("accuracy >= 0.5")], workspace=ws)
    assert report.verdict == "pass"
    version = registry.register(model_name, run.run_id, workspace=ws)
    packaged = shipyard.package(f"models:/{model_name}/{version.version}", image=False, quiet=True)
    assert packaged.bento.lineage.model_sha256 == logged.sha256
    assert (packaged.bento.path / "bento.yaml").is_file()

    client = _client(ws.tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found.artifact_location == f"s3://{bucket}/team-a/{slug(experiment)}"
    s3 = s3_store.client()
    root = f"team-a/{slug(experiment)}/"
    stored = _objects(s3, bucket, root)
    for artifact in ("shipyard/gates/report.json", lineage.REFERENCE_ARTIFACT, lineage.ENV_LOCK_ARTIFACT):
        assert f"{root}{run.run_id}/artifacts/{artifact}" in stored, (artifact, sorted(stored))
    model_uri = client.get_model_version_download_uri(model_name, version.version)
    model_prefix = model_uri.removeprefix(f"s3://{bucket}/").rstrip("/") + "/"
    assert model_uri.startswith(f"s3://{bucket}/{root}") and model_prefix + "MLmodel" in stored
    assert directory_sha256(_fetch_prefix(s3, bucket, model_prefix, tmp_path / "from-s3")) == logged.sha256
    assert not any(ws.artifacts_dir.rglob("*")), "artifacts were written to the workspace too"

    # the digest is checked on what comes back from the bucket: a changed object is refused
    key = model_prefix + "requirements.txt"
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=body + b"requests\n")
    with pytest.raises(shipyard.PackagingError, match="are not the model that was registered"):
        shipyard.package(f"models:/{model_name}/{version.version}", image=False, quiet=True)


@pytest.mark.parametrize(
    ("case", "changes", "error", "names"),
    [
        pytest.param(case, changes, error, names, id=case.replace(" ", "-"))
        for case, changes, error, names in [
            ("no endpoint", {"MLFLOW_S3_ENDPOINT_URL": None}, shipyard.TrackingUnavailable,
             "MLFLOW_S3_ENDPOINT_URL to the URL"),
            ("endpoint refuses", {"MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:{free}"}, shipyard.TrackingUnavailable,
             "MLFLOW_S3_ENDPOINT_URL is http://127.0.0.1:"),
            ("no credentials", {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
                                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"},
             shipyard.TrackingError, "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            ("missing bucket", {}, shipyard.TrackingError, "fix artifact_root (SHIPYARD_ARTIFACT_ROOT)"),
        ]
    ],
)
def test_a_bad_s3_configuration_is_a_typed_error_naming_what_to_fix(
    s3_store, project, monkeypatch, case, changes, error, names  # noqa: F811
) -> None:
    from mlflow.tracking import MlflowClient

    from tests.conftest import free_port

    bucket = "shipyard-direct-bad" if case != "missing bucket" else "no-such-bucket"
    if case != "missing bucket":
        s3_store.create_bucket(bucket)
    _s3_env(monkeypatch, s3_store, **{k: v.format(free=free_port()) if v else v for k, v in changes.items()})
    monkeypatch.setenv("SHIPYARD_ARTIFACT_ROOT", f"s3://{bucket}/x")
    ws = shipyard.init(project_dir=project)
    with pytest.raises(error) as raised, shipyard.start_run(f"bad s3 {case}", workspace=ws):
        pytest.fail("the run started on an unusable artifact store")
    assert names in str(raised.value), str(raised.value)
    assert raised.value.__cause__ is not None and type(raised.value.__cause__).__module__.startswith("botocore")
    # nothing was created that would keep pointing at the bad location
    assert MlflowClient(tracking_uri=ws.tracking_uri).get_experiment_by_name(f"bad s3 {case}") is None
